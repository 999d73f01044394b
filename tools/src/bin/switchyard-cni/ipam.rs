//! Delegated IPAM: running the plugin the configuration's `ipam.type` names, from
//! `CNI_PATH`, with the same environment and configuration, as the spec says.
//!
//! Older IPAM plugins (the reference `host-local` of containernetworking-plugins 1.1
//! speaks CNI up to 1.0.0) refuse a newer `cniVersion`, so the configuration they get
//! carries the newest version both sides speak.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use serde_json::Value;

use crate::spec::{CniError, Code, SUPPORTED_VERSIONS};
use crate::Env;

/// The IPAM plugin of a configuration.
pub struct Ipam {
    plugin: PathBuf,
    config: Value,
}

impl Ipam {
    /// The plugin `raw`'s `ipam` section names, or `None` without one.
    pub fn from_config(raw: &Value, env: &Env) -> Result<Option<Ipam>, CniError> {
        let Some(section) = raw.get("ipam") else {
            return Ok(None);
        };
        let Some(kind) = section.get("type").and_then(Value::as_str) else {
            return Err(CniError::new(
                Code::InvalidConfig,
                "the ipam section has no type (such as \"host-local\")",
            ));
        };
        if kind.is_empty() || kind.contains('/') {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!("invalid IPAM plugin type {kind:?}"),
            ));
        }
        let plugin = env
            .cni_path
            .iter()
            .map(|dir| dir.join(kind))
            .find(|path| path.is_file())
            .ok_or_else(|| {
                CniError::new(
                    Code::InvalidConfig,
                    format!("IPAM plugin {kind} not found in CNI_PATH"),
                )
                .details(format!("searched: {:?}", env.cni_path))
            })?;
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
            .env("CNI_PATH", &env.cni_path_text)
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
