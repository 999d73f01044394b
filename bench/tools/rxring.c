// rxring: how fast one thread takes frames off an AF_PACKET socket with vnet headers,
// by recv(2) (what switchd's host ports do) or from a TPACKET_V3 receive ring (with and
// without copying each frame out, as the datapath needs it in its own buffer).
//
//   rxring send IFNAME SECONDS                 # blast 60-byte frames with sendmmsg
//   rxring trickle IFNAME SECONDS              # one time-stamped frame every 2 ms
//   rxring recv|ring|ringcopy IFNAME SECONDS   # count what arrives; prints frames/s,
//                                              # CPU µs per frame of this thread, and
//                                              # the time from send to read
//
// bench/tools/rxring.sh builds it and runs both senders against each reader on a veth
// pair between two namespaces of its own. It decided that switchd's host ports read
// with recv(2), not a TPACKET_V3 ring: see docs/host-ports.md.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec / 1e6;
}

static int open_bound(const char *ifname, int vnet) {
  int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) { perror("socket"); exit(1); }
  int one = 1;
  if (vnet && setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one)) { perror("vnet"); exit(1); }
  setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  int buf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
  return fd;
}

static void bind_to(int fd, const char *ifname) {
  struct sockaddr_ll sll = {0};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = if_nametoindex(ifname);
  if (!sll.sll_ifindex || bind(fd, (void *)&sll, sizeof sll)) { perror("bind"); exit(1); }
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: rxring send|recv|ring|ringcopy IFNAME SECONDS\n"); return 2; }
  const char *mode = argv[1], *ifname = argv[2];
  double secs = atof(argv[3]);
  if (!strcmp(mode, "trickle")) {  // one frame every 2 ms, stamped with the send time
    int fd = open_bound(ifname, 0);
    bind_to(fd, ifname);
    unsigned char frame[60] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06};
    double end = now() + secs;
    long sent = 0;
    while (now() < end) {
      double t = now();
      memcpy(frame + 20, &t, sizeof t);
      if (send(fd, frame, sizeof frame, 0) > 0) sent++;
      usleep(2000);
    }
    printf("trickled %ld frames\n", sent);
    return 0;
  }
  if (!strcmp(mode, "send")) {
    int fd = open_bound(ifname, 0);
    bind_to(fd, ifname);
    unsigned char frame[60] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x03, 0x08, 0x06};  // not timed
    struct iovec iov[64];
    struct mmsghdr m[64];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 64; i++) {
      iov[i].iov_base = frame; iov[i].iov_len = sizeof frame;
      m[i].msg_hdr.msg_iov = &iov[i]; m[i].msg_hdr.msg_iovlen = 1;
    }
    double end = now() + secs;
    long sent = 0;
    while (now() < end) { int n = sendmmsg(fd, m, 64, 0); if (n > 0) sent += n; }
    printf("sent %.3f Mpps\n", sent / secs / 1e6);
    return 0;
  }
  int fd = open_bound(ifname, 1);
  int ring = !strcmp(mode, "ring") || !strcmp(mode, "ringcopy");
  int copy = !strcmp(mode, "ringcopy");
  unsigned char *map = NULL;
  struct tpacket_req3 req = {0};
  if (ring) {
    int v = TPACKET_V3;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v)) { perror("version"); return 1; }
    req.tp_block_size = 1 << 18;  // 256 KiB: room for a 64 KiB super-frame and more
    req.tp_block_nr = 64;
    req.tp_frame_size = 2048;
    req.tp_frame_nr = req.tp_block_size / req.tp_frame_size * req.tp_block_nr;
    req.tp_retire_blk_tov = 1;  // ms
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req)) { perror("ring"); return 1; }
    map = mmap(NULL, (size_t)req.tp_block_size * req.tp_block_nr, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_LOCKED, fd, 0);
    if (map == MAP_FAILED) { perror("mmap"); return 1; }
  }
  bind_to(fd, ifname);
  static unsigned char buf[70000], out[70000];
  long frames = 0;
  double delay = 0;
  long stamped = 0;
  unsigned block = 0;
  double start = now(), c0 = cpu(), end = start + secs;
  while (now() < end) {
    if (!ring) {
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        frames++;
        if (n >= 10 + 28 && buf[10 + 12] == 0x08 && buf[10 + 13] == 0x06 && buf[10 + 11] == 1) { double t; memcpy(&t, buf + 10 + 20, sizeof t); delay += now() - t; stamped++; }
        continue;
      }
      struct pollfd p = {fd, POLLIN, 0};
      poll(&p, 1, 10);
      continue;
    }
    struct tpacket_block_desc *b = (void *)(map + (size_t)block * req.tp_block_size);
    if (!(b->hdr.bh1.block_status & TP_STATUS_USER)) {
      struct pollfd p = {fd, POLLIN | POLLERR, 0};
      poll(&p, 1, 10);
      continue;
    }
    unsigned n = b->hdr.bh1.num_pkts;
    struct tpacket3_hdr *h = (void *)((unsigned char *)b + b->hdr.bh1.offset_to_first_pkt);
    for (unsigned i = 0; i < n; i++) {
      if (copy) memcpy(out, (unsigned char *)h + h->tp_mac - 10, h->tp_snaplen + 10);
      unsigned char *f = (unsigned char *)h + h->tp_mac;
      if (h->tp_snaplen >= 28 && f[12] == 0x08 && f[13] == 0x06 && f[11] == 1) { double t; memcpy(&t, f + 20, sizeof t); delay += now() - t; stamped++; }
      frames++;
      h = (void *)((unsigned char *)h + h->tp_next_offset);
    }
    __atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    block = (block + 1) % req.tp_block_nr;
  }
  double el = now() - start, c = cpu() - c0;
  struct tpacket_stats_v3 st = {0};
  socklen_t sl = sizeof st;
  getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl);
  printf("%-8s %ld frames, %.3f Mpps, %.2f us CPU per frame, kernel dropped %u of %u", mode,
         frames, frames / el / 1e6, c / frames * 1e6, st.tp_drops, st.tp_packets);
  if (stamped) printf(", %.1f us from send to read", delay / stamped * 1e6);
  printf("\n");
  (void)buf;
  return 0;
}
