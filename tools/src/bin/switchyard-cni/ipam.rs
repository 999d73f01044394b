//! Delegated IPAM: running the plugin the configuration's `ipam.type` names, from
//! `CNI_PATH`, with the same environment and configuration, as the spec says.
//!
//! Older IPAM plugins (the reference `host-local` of containernetworking-plugins 1.1
//! speaks CNI up to 1.0.0) refuse a newer `cniVersion`, so the configuration they get
//! carries the newest version both sides speak.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use serde_json::Value;

use crate::spec::{plugin_name_problem, shown, CniError, Code, NetConf, SUPPORTED_VERSIONS};
use crate::Env;

/// The IPAM plugin of a configuration.
pub struct Ipam {
    plugin: PathBuf,
    config: Value,
}

impl Ipam {
    /// The IPAM plugin the configuration's `ipam.type` names, found in `CNI_PATH`, or
    /// `None` without an `ipam` section. Asks the plugin for its versions (VERSION).
    pub fn from_config(conf: &NetConf, raw: &Value, env: &Env) -> Result<Option<Ipam>, CniError> {
        let Some(kind) = conf.ipam_type.as_deref() else {
            return Ok(None);
        };
        let plugin = find_plugin(&env.cni_path, kind)?;
        let mut ipam = Ipam {
            plugin,
            config: raw.clone(),
        };
        ipam.negotiate_version(env)?;
        Ok(Some(ipam))
    }

    /// Lowers the configuration's `cniVersion` to the newest one the plugin speaks.
    fn negotiate_version(&mut self, env: &Env) -> Result<(), CniError> {
        let ours = self
            .config
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("1.1.0")
            .to_string();
        let probe = serde_json::json!({ "cniVersion": ours });
        let answer = self.exec("VERSION", env, &probe, &env.container_id, &env.ifname)?;
        let theirs: Vec<&str> = answer
            .get("supportedVersions")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if theirs.contains(&ours.as_str()) {
            return Ok(());
        }
        let common = SUPPORTED_VERSIONS
            .iter()
            .rev()
            .filter(|v| **v <= ours.as_str())
            .find(|v| theirs.contains(v))
            .ok_or_else(|| {
                CniError::new(
                    Code::IncompatibleVersion,
                    format!(
                        "IPAM plugin {} speaks none of the CNI versions up to {ours}",
                        self.plugin.display()
                    ),
                )
                .details(format!("it speaks {theirs:?}"))
            })?;
        if let Some(object) = self.config.as_object_mut() {
            object.insert("cniVersion".into(), Value::from(*common));
            // A prevResult in our version may not parse in theirs.
            object.remove("prevResult");
        }
        Ok(())
    }

    /// ADD: the IPv4 address (with prefix) and gateway the plugin assigned.
    pub fn add(&self, env: &Env) -> Result<(Ipv4Net, Option<Ipv4Addr>), CniError> {
        let result = self.exec("ADD", env, &self.config, &env.container_id, &env.ifname)?;
        let first = result
            .get("ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|ip| {
                let address = ip.get("address")?.as_str()?.parse::<Ipv4Net>().ok()?;
                let gateway = ip
                    .get("gateway")
                    .and_then(Value::as_str)
                    .and_then(|g| g.parse().ok());
                Some((address, gateway))
            });
        first.ok_or_else(|| {
            CniError::new(
                Code::Ipam,
                format!(
                    "IPAM plugin {} assigned no IPv4 address",
                    self.plugin.display()
                ),
            )
            .details(result)
        })
    }

    /// DEL for `container_id`/`ifname` (best effort is the caller's choice).
    pub fn del(&self, env: &Env, container_id: &str, ifname: &str) -> Result<(), CniError> {
        self.exec("DEL", env, &self.config, container_id, ifname)
            .map(drop)
    }

    /// Runs the plugin; its stdout is the answer (or its error, passed on).
    fn exec(
        &self,
        command: &str,
        env: &Env,
        config: &Value,
        container_id: &str,
        ifname: &str,
    ) -> Result<Value, CniError> {
        let io_error = |what: &str, err: std::io::Error| {
            CniError::new(
                Code::Io,
                format!("{what} IPAM plugin {}", self.plugin.display()),
            )
            .details(err)
        };
        let mut child = Command::new(&self.plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_NETNS", &env.netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_ARGS", &env.args)
            .env("CNI_PATH", &env.cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|err| io_error("cannot run", err))?;
        if let Some(mut stdin) = child.stdin.take() {
            let bytes = serde_json::to_vec(config).unwrap_or_default();
            stdin
                .write_all(&bytes)
                .map_err(|err| io_error("cannot write to", err))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|err| io_error("cannot wait for", err))?;
        let answer: Value = if output.stdout.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&output.stdout).map_err(|err| {
                CniError::new(
                    Code::Ipam,
                    format!(
                        "IPAM plugin {} answered {command} with something that is not JSON",
                        self.plugin.display()
                    ),
                )
                .details(err)
            })?
        };
        if output.status.success() {
            return Ok(answer);
        }
        let msg = answer
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or("failed without a message");
        let mut error = CniError::new(
            Code::Ipam,
            format!(
                "IPAM plugin {} failed {command}: {msg}",
                self.plugin.display()
            ),
        );
        if let Some(code) = answer.get("code").and_then(Value::as_u64) {
            error.code = u32::try_from(code).unwrap_or(Code::Ipam as u32);
        }
        if let Some(details) = answer.get("details").and_then(Value::as_str) {
            error.details = details.to_string();
        }
        Err(error)
    }
}

/// Where the delegated plugin `name` is: the first directory of `cni_path` (`CNI_PATH`, a
/// colon-separated list) that has a file of that name. Only those directories are
/// searched: never the working directory, never `PATH`. `CNI_PATH` missing or empty, or
/// with a relative directory in it, is code 4; empty entries (`a::b`, a trailing `:`)
/// are skipped; `name` must be a plain file name (code 7).
pub fn find_plugin(cni_path: &str, name: &str) -> Result<PathBuf, CniError> {
    if let Some(problem) = plugin_name_problem(name) {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!(
                "invalid ipam.type in the network configuration: {:?} is not a plugin's name ({problem})",
                shown(name)
            ),
        ));
    }
    let dirs: Vec<&Path> = cni_path
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(Path::new)
        .collect();
    if dirs.is_empty() {
        return Err(CniError::new(
            Code::InvalidEnvironment,
            format!(
                "CNI_PATH is not set, and the IPAM plugin {name} is looked up only in its directories; \
                 the runtime must set CNI_PATH to its plugin directories (such as /opt/cni/bin)"
            ),
        ));
    }
    if let Some(relative) = dirs.iter().find(|dir| !dir.is_absolute()) {
        return Err(CniError::new(
            Code::InvalidEnvironment,
            format!(
                "CNI_PATH has the relative directory {:?}, which would depend on the working directory; \
                 give absolute directories only (such as /opt/cni/bin)",
                shown(&relative.to_string_lossy())
            ),
        ));
    }
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                format!(
                    "IPAM plugin {name} is not in any directory of CNI_PATH ({}); install it there, or fix ipam.type",
                    shown(cni_path)
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory under the temp dir with an (empty) file `name` in it; removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn with(tag: &str, name: &str) -> Dir {
            let path = std::env::temp_dir().join(format!("swcni{}{tag}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join(name), b"").unwrap();
            Dir(path)
        }

        fn text(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn plugins_are_found_in_the_first_cni_path_directory_that_has_them() {
        let first = Dir::with("a", "ipam-x");
        let second = Dir::with("b", "ipam-x");
        let cni_path = format!("/nonexistent::{}:{}:", first.text(), second.text());
        assert_eq!(
            find_plugin(&cni_path, "ipam-x").unwrap(),
            first.0.join("ipam-x")
        );
        let err = find_plugin(&cni_path, "ipam-y").unwrap_err();
        assert_eq!(err.code, Code::InvalidConfig as u32, "{}", err.msg);
        assert!(err.msg.contains("CNI_PATH"), "{}", err.msg);
        // A directory of that name is not a plugin.
        std::fs::create_dir(second.0.join("ipam-d")).unwrap();
        assert!(find_plugin(second.text(), "ipam-d").is_err());
    }

    #[test]
    fn cni_path_must_be_set_and_absolute() {
        let dir = Dir::with("c", "ipam-x");
        for cni_path in ["", ":", "::"] {
            let err = find_plugin(cni_path, "ipam-x").unwrap_err();
            assert_eq!(err.code, Code::InvalidEnvironment as u32, "{cni_path:?}");
            assert!(err.msg.contains("CNI_PATH"), "{}", err.msg);
        }
        for cni_path in [
            ".".to_string(),
            "bin".to_string(),
            format!("{}:lib/cni", dir.text()),
        ] {
            let err = find_plugin(&cni_path, "ipam-x").unwrap_err();
            assert_eq!(err.code, Code::InvalidEnvironment as u32, "{cni_path:?}");
            assert!(err.msg.contains("relative"), "{}", err.msg);
        }
    }

    #[test]
    fn a_plugin_name_is_a_plain_file_name() {
        let dir = Dir::with("d", "ipam-x");
        for name in [
            "",
            ".",
            "..",
            "./ipam-x",
            "../ipam-x",
            "sub/ipam-x",
            "/bin/sh",
        ] {
            let err = find_plugin(dir.text(), name).unwrap_err();
            assert_eq!(err.code, Code::InvalidConfig as u32, "{name:?}");
        }
    }
}
