/*
 * ipmibench: a C client for measuring the /dev/ipmi0 path without a Go
 * runtime on the client side. It loops SEND_COMMAND (Get Device ID) + poll +
 * RECEIVE_MSG_TRUNC with DEPTH requests outstanding (1: strictly one after
 * the other), after WARMUP unmeasured ones, and prints the same line as
 * ipmiprobe bench:
 *
 *   bench depth=D n=N errors=E elapsed_ms=T req_per_s=R p50_us=P p99_us=Q
 *
 * Each latency runs from just before a request's SEND to just after its
 * RECEIVE. make bench-vm builds it static with the host's gcc:
 *
 *   gcc -O2 -static -o ipmibench integration/guest/cbench/ipmibench.c
 *   ipmibench [-d /dev/ipmi0] [-n 1000] [-depth 1] [-warmup 50]
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/ipmi.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* run sends n Get Device ID requests, depth at a time; lat (if not NULL)
 * gets each latency. It returns the number of failed requests, or -1 when
 * the device stops answering. */
static int run(int fd, int n, int depth, double *lat)
{
	struct ipmi_system_interface_addr si = {IPMI_SYSTEM_INTERFACE_ADDR_TYPE, IPMI_BMC_CHANNEL, 0};
	double *start = calloc(n, sizeof *start);
	unsigned char buf[IPMI_MAX_MSG_LENGTH];
	struct ipmi_addr ra;
	int sent = 0, done = 0, errs = 0, nlat = 0;
	while (done < n) {
		while (sent < n && sent - done < depth) {
			struct ipmi_req req = {.addr = (unsigned char *)&si, .addr_len = sizeof si, .msgid = sent};
			req.msg.netfn = IPMI_NETFN_APP_REQUEST;
			req.msg.cmd = 0x01; /* Get Device ID */
			start[sent] = now_us();
			if (ioctl(fd, IPMICTL_SEND_COMMAND, &req) < 0)
				errs++, done++;
			sent++;
		}
		if (done == n)
			break;
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 10000) != 1) {
			fprintf(stderr, "ipmibench: no reply within 10 s (%d of %d done)\n", done, n);
			free(start);
			return -1;
		}
		for (;;) {
			struct ipmi_recv r = {.addr = (unsigned char *)&ra, .addr_len = sizeof ra};
			r.msg.data = buf;
			r.msg.data_len = sizeof buf;
			if (ioctl(fd, IPMICTL_RECEIVE_MSG_TRUNC, &r) < 0) {
				if (errno != EAGAIN)
					errs++, done++;
				break;
			}
			done++;
			if (r.msgid < 0 || r.msgid >= sent || r.msg.data_len == 0 || buf[0] != 0)
				errs++;
			else if (lat)
				lat[nlat++] = now_us() - start[r.msgid];
			if (depth == 1)
				break; /* the next request first: no RECEIVE that must fail */
		}
	}
	free(start);
	return errs;
}

int main(int argc, char **argv)
{
	const char *dev = "/dev/ipmi0";
	int n = 1000, depth = 1, warm = 50;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-d"))
			dev = argv[i + 1];
		else if (!strcmp(argv[i], "-n"))
			n = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "-depth"))
			depth = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "-warmup"))
			warm = atoi(argv[i + 1]);
		else {
			fprintf(stderr, "usage: ipmibench [-d DEV] [-n N] [-depth D] [-warmup W]\n");
			return 2;
		}
	}
	if (n < 1 || depth < 1 || warm < 0) {
		fprintf(stderr, "ipmibench: -n and -depth must be positive\n");
		return 2;
	}
	int fd = open(dev, O_RDWR);
	if (fd < 0) {
		perror(dev);
		return 1;
	}
	if (warm && run(fd, warm, depth, NULL) != 0) {
		fprintf(stderr, "ipmibench: warm-up failed\n");
		return 1;
	}
	double *lat = calloc(n, sizeof *lat), t0 = now_us();
	int errs = run(fd, n, depth, lat);
	double el = now_us() - t0;
	if (errs < 0)
		return 1;
	int m = n - errs;
	qsort(lat, m, sizeof *lat, cmp);
	double p50 = m ? lat[m / 2] : 0, p99 = m ? lat[m * 99 / 100 < m ? m * 99 / 100 : m - 1] : 0;
	printf("bench depth=%d n=%d errors=%d elapsed_ms=%.1f req_per_s=%.0f p50_us=%.0f p99_us=%.0f\n",
	       depth, n, errs, el / 1e3, n / el * 1e6, p50, p99);
	return 0;
}
