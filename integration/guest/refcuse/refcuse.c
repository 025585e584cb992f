/*
 * refcuse: the reference CUSE server for the per-request benchmark. It
 * serves an IPMI character device through raw /dev/cuse, single-threaded,
 * with a canned Get Device ID reply and no BMC, in the fewest rounds the
 * CUSE ioctl protocol allows safely:
 *
 *   SEND_COMMAND       3 rounds: struct; struct + address + data; answer
 *   poll               1 round: the reply is queued before SEND is answered
 *   RECEIVE_MSG_TRUNC  2 rounds: the struct comes in while the output is
 *                      declared at the buffers the file used last time (the
 *                      kernel writes them only with the final answer), then
 *                      the answer; 3 rounds when the buffers changed
 *
 * It is what any CUSE /dev/ipmi0 must pay, the floor ipmi-cuse is measured
 * against (make bench-vm). Poll wake-ups follow the kernel's contract: a POLL
 * with FUSE_POLL_SCHEDULE_NOTIFY arms the file's kh; a message that makes
 * an empty queue non-empty while it is armed writes one FUSE_NOTIFY_POLL.
 *
 *   gcc -O2 -static -o refcuse integration/guest/refcuse/refcuse.c
 *   refcuse DEVNAME            (the node is /dev/DEVNAME)
 *
 * On SIGTERM or SIGUSR1 it prints its counters on stdout:
 *   refcuse requests=N reads=N writes=N notifies=N
 * (SIGTERM then exits). Only 64-bit callers are served; compat ioctls get
 * ENOTTY.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/fuse.h>

#define MAXFILES 64
#define MAXQ 100 /* the kernel's per-user receive queue limit */
#define IPMI_MAX_MSG 272
#define IPMI_MAX_ADDR 32
#define SI_ADDR_TYPE 0x0c
#define SI_ADDR_LEN 8 /* struct ipmi_system_interface_addr */
#define REQ_SIZE 40   /* struct ipmi_req on x86-64 */
#define RECV_SIZE 48  /* struct ipmi_recv on x86-64 */
#define CMD_SEND 0x8028690Du
#define CMD_RECV_TRUNC 0xC030690Bu
#define POLLIN_RDNORM 0x41 /* what ipmi_poll reports with a message queued */

struct file {
	int used;
	uint64_t kh;   /* armed poll handle, 0 when none */
	int64_t q[MAXQ];
	int qhead, qlen;
	uint64_t last_addr, last_data; /* buffers of the last RECEIVE */
	uint32_t last_cd;               /* its data capacity */
	int have_last;
};

static struct file files[MAXFILES];
static int chan;
static unsigned long n_req, n_read, n_write, n_notify;
static volatile sig_atomic_t report, quit;

/* Get Device ID as QEMU's BMC answers it: cc, then 15 data bytes. */
static const unsigned char canned[] = {0x00, 0x20, 0x01, 0x02, 0x00, 0x02, 0x1f, 0x00,
				       0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};

static void on_signal(int sig)
{
	report = 1;
	if (sig == SIGTERM)
		quit = 1;
}

static void put_out(const void *p, size_t n)
{
	ssize_t w;
	do
		w = write(chan, p, n);
	while (w < 0 && errno == EINTR);
	n_write++;
}

/* reply writes one answer: header plus up to three payload pieces. */
static void reply(uint64_t unique, int err, const void *a, size_t an, const void *b, size_t bn,
		  const void *c, size_t cn)
{
	unsigned char m[sizeof(struct fuse_out_header) + 512];
	struct fuse_out_header h = {.len = sizeof h + an + bn + cn, .error = -err, .unique = unique};
	size_t o = sizeof h;
	memcpy(m, &h, sizeof h);
	if (an) memcpy(m + o, a, an), o += an;
	if (bn) memcpy(m + o, b, bn), o += bn;
	if (cn) memcpy(m + o, c, cn), o += cn;
	put_out(m, o);
}

static void reply_err(uint64_t unique, int err) { reply(unique, err, 0, 0, 0, 0, 0, 0); }

static void retry(uint64_t unique, const struct fuse_ioctl_iovec *in, int nin,
		  const struct fuse_ioctl_iovec *out, int nout)
{
	struct fuse_ioctl_out o = {.flags = FUSE_IOCTL_RETRY, .in_iovs = nin, .out_iovs = nout};
	reply(unique, 0, &o, sizeof o, in, nin * sizeof *in, out, nout * sizeof *out);
}

static void final(uint64_t unique, int result, const void *data, size_t n)
{
	struct fuse_ioctl_out o = {.result = result};
	reply(unique, 0, &o, sizeof o, data, n, 0, 0);
}

static struct file *lookup(uint64_t fh)
{
	if (fh < 1 || fh > MAXFILES || !files[fh - 1].used)
		return 0;
	return &files[fh - 1];
}

static void notify(struct file *f)
{
	if (!f->kh)
		return;
	struct {
		struct fuse_out_header h;
		struct fuse_notify_poll_wakeup_out w;
	} m = {{sizeof m, FUSE_NOTIFY_POLL, 0}, {f->kh}};
	f->kh = 0; /* one-shot: the woken poller polls again and re-arms */
	put_out(&m, sizeof m);
	n_notify++;
}

static uint64_t u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static void do_send(uint64_t unique, struct file *f, const struct fuse_ioctl_in *in, const unsigned char *d)
{
	struct fuse_ioctl_iovec iov[3] = {{in->arg, REQ_SIZE}};
	if (in->in_size < REQ_SIZE) { /* round 1: the struct */
		retry(unique, iov, 1, 0, 0);
		return;
	}
	uint64_t addr = u64(d), data = u64(d + 32);
	uint32_t alen = u32(d + 8);
	uint16_t dlen = data ? u16(d + 26) : 0;
	if (alen > sizeof(int) + sizeof(short) + IPMI_MAX_ADDR + 2) { /* sizeof(struct ipmi_addr) */
		reply_err(unique, EINVAL);
		return;
	}
	if (dlen > IPMI_MAX_MSG) {
		reply_err(unique, EMSGSIZE);
		return;
	}
	int n = 1;
	if (alen) iov[n++] = (struct fuse_ioctl_iovec){addr, alen};
	if (dlen) iov[n++] = (struct fuse_ioctl_iovec){data, dlen};
	if (in->in_size != REQ_SIZE + alen + dlen) { /* round 2: address and data */
		retry(unique, iov, n, 0, 0);
		return;
	}
	/* round 3: validate the address and queue the canned answer. */
	if (alen < SI_ADDR_LEN || u32(d + REQ_SIZE) != SI_ADDR_TYPE) {
		reply_err(unique, EINVAL);
		return;
	}
	if (f->qlen == MAXQ) {
		reply_err(unique, EBUSY);
		return;
	}
	f->q[(f->qhead + f->qlen++) % MAXQ] = (int64_t)u64(d + 16);
	if (f->qlen == 1)
		notify(f);
	final(unique, 0, 0, 0);
}

/*
 * RECEIVE_MSG_TRUNC. Round 1 asks for the struct and, when the file has a
 * free declaration slot, declares the output at the buffers of its last
 * receive. The slot number travels in in_size: the in-iovecs are the
 * struct and again its first s bytes (memory the kernel reads this round
 * anyway), so round 2 knows exactly which addresses the kernel holds as
 * out-iovecs. The answer goes out only if the struct still names those
 * buffers; otherwise round 2 asks again with the exact ones (3 rounds).
 * A slot is never reused before its round 2 arrived, so concurrent
 * receives on one file cannot mix up declarations.
 */
#define SLOTS 8
struct decl { int busy; uint64_t addr, data; uint32_t len; };
static struct decl decls[MAXFILES][SLOTS];

static void recv_answer(uint64_t unique, struct file *f, const unsigned char *d, size_t ld)
{
	unsigned char out[RECV_SIZE + SI_ADDR_LEN + sizeof canned];
	int32_t rt = 1; /* IPMI_RESPONSE_RECV_TYPE */
	uint32_t la = SI_ADDR_LEN;
	int64_t id = f->q[f->qhead];
	uint16_t l16 = ld;
	unsigned char sa[SI_ADDR_LEN] = {SI_ADDR_TYPE, 0, 0, 0, 0x0f, 0, 0, 0};
	memcpy(out, d, RECV_SIZE);
	memcpy(out + 0, &rt, 4);
	memcpy(out + 16, &la, 4);
	memcpy(out + 24, &id, 8);
	out[32] = 0x07, out[33] = 0x01; /* App response, Get Device ID */
	memcpy(out + 34, &l16, 2);
	memcpy(out + RECV_SIZE, sa, SI_ADDR_LEN);
	memcpy(out + RECV_SIZE + SI_ADDR_LEN, canned, ld);
	f->qhead = (f->qhead + 1) % MAXQ, f->qlen--;
	final(unique, ld < sizeof canned ? -EMSGSIZE : 0, out, RECV_SIZE + SI_ADDR_LEN + ld);
}

static void do_recv(uint64_t unique, struct file *f, const struct fuse_ioctl_in *in, const unsigned char *d)
{
	struct decl *dt = decls[f - files];
	struct fuse_ioctl_iovec iv[2] = {{in->arg, RECV_SIZE}}, ov[3] = {{in->arg, RECV_SIZE}};
	if (in->in_size < RECV_SIZE) { /* round 1 */
		int s = 0;
		while (f->have_last && s < SLOTS && dt[s].busy)
			s++;
		if (!f->have_last || s == SLOTS) {
			retry(unique, iv, 1, 0, 0);
			return;
		}
		dt[s] = (struct decl){1, f->last_addr, f->last_data, f->last_cd};
		iv[1] = (struct fuse_ioctl_iovec){in->arg, s + 1};
		ov[1] = (struct fuse_ioctl_iovec){dt[s].addr, SI_ADDR_LEN};
		ov[2] = (struct fuse_ioctl_iovec){dt[s].data, dt[s].len};
		retry(unique, iv, 2, ov, dt[s].len ? 3 : 2);
		return;
	}
	struct decl *spec = 0;
	if (in->in_size > RECV_SIZE) {
		unsigned s = in->in_size - RECV_SIZE - 1;
		if (s >= SLOTS || !dt[s].busy) {
			reply_err(unique, EIO);
			return;
		}
		spec = &dt[s];
		spec->busy = 0;
	}
	uint64_t addr = u64(d + 8), data = u64(d + 40);
	uint32_t ca = u32(d + 16);
	uint16_t cd = u16(d + 34);
	if (f->qlen == 0) {
		reply_err(unique, EAGAIN);
		return;
	}
	if (ca < SI_ADDR_LEN) {
		reply_err(unique, EINVAL);
		return;
	}
	size_t ld = cd < sizeof canned ? cd : sizeof canned;
	if (!data)
		ld = 0;
	f->last_addr = addr, f->last_data = data, f->last_cd = cd, f->have_last = 1;
	if (spec ? spec->addr == addr && spec->data == data && ld <= spec->len
		 : in->out_size == RECV_SIZE + SI_ADDR_LEN + ld) {
		recv_answer(unique, f, d, ld);
		return;
	}
	ov[1] = (struct fuse_ioctl_iovec){addr, SI_ADDR_LEN};
	ov[2] = (struct fuse_ioctl_iovec){data, ld};
	retry(unique, iv, 1, ov, ld ? 3 : 2);
}

static void do_ioctl(uint64_t unique, const unsigned char *m, size_t n)
{
	const struct fuse_ioctl_in *in = (const void *)(m + sizeof(struct fuse_in_header));
	const unsigned char *d = m + sizeof(struct fuse_in_header) + sizeof *in;
	struct file *f = lookup(in->fh);
	if (!f) {
		reply_err(unique, EBADF);
		return;
	}
	if (in->flags & FUSE_IOCTL_COMPAT || n < sizeof(struct fuse_in_header) + sizeof *in + in->in_size) {
		reply_err(unique, ENOTTY);
		return;
	}
	switch (in->cmd) {
	case CMD_SEND:
		do_send(unique, f, in, d);
		break;
	case CMD_RECV_TRUNC:
		do_recv(unique, f, in, d);
		break;
	default:
		reply_err(unique, ENOTTY);
	}
}

static void serve(const unsigned char *m, size_t n)
{
	const struct fuse_in_header *h = (const void *)m;
	const void *arg = m + sizeof *h;
	struct file *f;
	n_req++;
	switch (h->opcode) {
	case FUSE_OPEN: {
		int i = 0;
		while (i < MAXFILES && files[i].used)
			i++;
		if (i == MAXFILES) {
			reply_err(h->unique, EBUSY);
			break;
		}
		memset(&files[i], 0, sizeof files[i]);
		memset(decls[i], 0, sizeof decls[i]);
		files[i].used = 1;
		struct fuse_open_out o = {.fh = i + 1};
		reply(h->unique, 0, &o, sizeof o, 0, 0, 0, 0);
		break;
	}
	case FUSE_RELEASE:
		if ((f = lookup(((const struct fuse_release_in *)arg)->fh)))
			f->used = 0;
		reply_err(h->unique, 0);
		break;
	case FUSE_IOCTL:
		do_ioctl(h->unique, m, n);
		break;
	case FUSE_POLL: {
		const struct fuse_poll_in *p = arg;
		struct fuse_poll_out o = {0};
		if (!(f = lookup(p->fh))) {
			reply_err(h->unique, EBADF);
			break;
		}
		/* Armed only while the kernel says someone waits. */
		f->kh = p->flags & FUSE_POLL_SCHEDULE_NOTIFY ? p->kh : 0;
		if (f->qlen)
			o.revents = POLLIN_RDNORM;
		reply(h->unique, 0, &o, sizeof o, 0, 0, 0, 0);
		break;
	}
	case FUSE_INTERRUPT:
		break; /* nothing here blocks */
	case FUSE_READ:
	case FUSE_WRITE:
		reply_err(h->unique, EINVAL);
		break;
	default:
		reply_err(h->unique, ENOSYS);
	}
}

static void print_counters(void)
{
	printf("refcuse requests=%lu reads=%lu writes=%lu notifies=%lu\n", n_req, n_read, n_write, n_notify);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static unsigned char buf[136 * 1024];
	if (argc != 2) {
		fprintf(stderr, "usage: refcuse DEVNAME\n");
		return 2;
	}
	struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: read returns EINTR */
	sigaction(SIGTERM, &sa, 0);
	sigaction(SIGUSR1, &sa, 0);
	if ((chan = open("/dev/cuse", O_RDWR)) < 0) {
		perror("refcuse: open /dev/cuse");
		return 1;
	}
	for (;;) {
		ssize_t n = read(chan, buf, sizeof buf);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ENOENT) {
				if (report)
					print_counters(), report = 0;
				if (quit)
					return 0;
				continue;
			}
			if (errno == ENODEV)
				return 0;
			perror("refcuse: read");
			return 1;
		}
		n_read++;
		const struct fuse_in_header *h = (const void *)buf;
		if ((size_t)n < sizeof *h || h->len != n)
			continue;
		if (h->opcode == CUSE_INIT) {
			struct cuse_init_out o = {.major = FUSE_KERNEL_VERSION, .minor = 31,
						  .flags = CUSE_UNRESTRICTED_IOCTL, .max_read = 65536, .max_write = 65536};
			char info[256];
			int il = snprintf(info, sizeof info, "DEVNAME=%s", argv[1]) + 1;
			reply(h->unique, 0, &o, sizeof o, info, il, 0, 0);
			n_req++;
			continue;
		}
		serve(buf, n);
	}
}
