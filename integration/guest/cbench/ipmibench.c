/*
 * ipmibench: a C client for measuring the /dev/ipmi0 path without a Go
 * runtime on the client side. It loops SEND_COMMAND (Get Device ID) + poll +
 * RECEIVE_MSG_TRUNC and times a poll on an empty queue (one CUSE request).
 *
 *   gcc -O2 -static -o /tmp/ipmibench integration/guest/cbench/ipmibench.c
 *   go run ./integration/cmd/demo -add /bin/ipmibench=/tmp/ipmibench /bin/ipmibench 1000
 *   go run ./integration/cmd/demo -mode=kernel -add /bin/ipmibench=/tmp/ipmibench /bin/ipmibench 1000
 */
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <poll.h>
#include <time.h>
#include <sys/ioctl.h>
#include <linux/ipmi.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
int main(int argc,char**argv){int n=argc>1?atoi(argv[1]):500;int fd=open("/dev/ipmi0",O_RDWR);if(fd<0){perror("open");return 1;}
struct ipmi_system_interface_addr si={IPMI_SYSTEM_INTERFACE_ADDR_TYPE,IPMI_BMC_CHANNEL,0};
unsigned char buf[300];struct ipmi_addr ra;double t0=now();
for(int i=0;i<n;i++){struct ipmi_req req={0};req.addr=(unsigned char*)&si;req.addr_len=sizeof si;req.msgid=i;req.msg.netfn=6;req.msg.cmd=1;
 if(ioctl(fd,IPMICTL_SEND_COMMAND,&req)<0){perror("send");return 1;}
 struct pollfd p={fd,POLLIN,0};if(poll(&p,1,5000)!=1){fprintf(stderr,"poll\n");return 1;}
 struct ipmi_recv r={0};r.addr=(unsigned char*)&ra;r.addr_len=sizeof ra;r.msg.data=buf;r.msg.data_len=sizeof buf;
 if(ioctl(fd,IPMICTL_RECEIVE_MSG_TRUNC,&r)<0){perror("recv");return 1;}}
double t=now()-t0;printf("C client: %d Get Device ID round trips, %.1f us each, %.0f req/s\n",n,t/n,n/t*1e6);
t0=now();for(int i=0;i<n;i++){struct pollfd p={fd,POLLIN,0};poll(&p,1,0);}printf("C client: poll on empty queue %.1f us\n",(now()-t0)/n);return 0;}
