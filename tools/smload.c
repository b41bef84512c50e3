// smload: the native load generator and server of `sockmesh bench` (so the client is never the
// bottleneck). One connection at a time, blocking sockets, results as one JSON line.
//
//   smload server ADDR ECHO_PORT SINK_PORT [HTTP_PORT]   echo server + sink server (+ an HTTP/1.1
//                                              keep-alive responder: 200 "ok" to every request), epoll, runs until killed
//   smload rr     ADDR PORT SIZE SECONDS        request/response on one keep-alive connection
//   smload stream ADDR PORT SIZE SECONDS        one-way stream of SIZE-byte writes to the sink
//   smload nagle  ADDR PORT SIZE SECONDS        the same without TCP_NODELAY (TCP may coalesce writes)
//   smload conn   ADDR PORT SIZE SECONDS        connect, one SIZE-byte exchange, close; repeated
//   smload http   ADDR PORT SIZE SECONDS        HTTP/1.1 GET requests on one keep-alive connection (SIZE unused)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096
#define BUF_SIZE (1 << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "smload: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct sockaddr_in parse_addr(const char *ip, const char *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
		fprintf(stderr, "smload: bad address %s\n", ip);
		exit(2);
	}
	return sa;
}

static int listen_on(struct sockaddr_in sa)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0) die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1024)) die("bind/listen");
	return fd;
}

/* A socket in a sockmap can answer EAGAIN even in blocking mode (tcp_bpf's recvmsg returns it
 * after a wake-up without data): wait for readiness and retry, as non-blocking servers do anyway. */
static int retry(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	if (errno == EINTR) return 1;
	if (errno != EAGAIN) return 0;
	poll(&p, 1, 1000);
	return 1;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (retry(fd, POLLOUT)) continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, char *buf, size_t len)
{
	while (len) {
		ssize_t n = read(fd, buf, len);
		if (n <= 0) {
			if (n < 0 && retry(fd, POLLIN)) continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Per-connection server state: echo connections write back what they read; sink connections
 * count bytes and answer the 8-byte total when the client half-closes. */
struct conn {
	int sink; /* 0 echo, 1 sink, 2 http */
	uint64_t total;
	int matched; /* http: how much of "\r\n\r\n" the request bytes so far end with */
};

static const char HTTP_OK[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

/* Answers every complete request header block in buf (GET: no bodies), keeping a partial
 * terminator across reads. */
static int http_answer(int fd, struct conn *c, const char *buf, size_t n)
{
	static const char end[] = "\r\n\r\n";

	for (size_t i = 0; i < n; i++) {
		c->matched = buf[i] == end[c->matched] ? c->matched + 1 : buf[i] == '\r' ? 1 : 0;
		if (c->matched == 4) {
			c->matched = 0;
			if (write_all(fd, HTTP_OK, sizeof(HTTP_OK) - 1)) return -1;
		}
	}
	return 0;
}

static _Noreturn void server(struct sockaddr_in echo, struct sockaddr_in sink, struct sockaddr_in *http)
{
	static struct conn conns[MAX_CONNS];
	static char buf[BUF_SIZE];
	int ep = epoll_create1(0), lfd[3] = { listen_on(echo), listen_on(sink), http ? listen_on(*http) : -1 };
	struct epoll_event ev = { .events = EPOLLIN };

	for (int i = 0; i < (http ? 3 : 2); i++) {
		ev.data.u64 = (uint64_t)(MAX_CONNS + i);
		epoll_ctl(ep, EPOLL_CTL_ADD, lfd[i], &ev);
	}
	printf("{\"event\":\"ready\"}\n");
	fflush(stdout);
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			uint64_t id = evs[i].data.u64;
			if (id >= MAX_CONNS) {
				int kind = (int)(id - MAX_CONNS), one = 1, c;
				while ((c = accept4(lfd[kind], NULL, NULL, 0)) >= 0) {
					if (c >= MAX_CONNS) {
						close(c);
						continue;
					}
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					conns[c] = (struct conn){ .sink = kind };
					ev.data.u64 = (uint64_t)c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			int fd = (int)id;
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r > 0) {
				if (conns[fd].sink == 2) {
					if (http_answer(fd, &conns[fd], buf, (size_t)r)) goto closed;
				} else if (conns[fd].sink)
					conns[fd].total += (uint64_t)r;
				else if (write_all(fd, buf, (size_t)r))
					goto closed;
				continue;
			}
			if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
			if (r == 0 && conns[fd].sink == 1) write_all(fd, (char *)&conns[fd].total, 8);
closed:
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			close(fd);
		}
	}
}

static int nodelay = 1;

static int connect_to(struct sockaddr_in sa)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) die("socket");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) die("connect");
	return fd;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, size_t n, double p)
{
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return (double)v[i] / 1000.0;
}

static int rr(struct sockaddr_in sa, size_t size, double secs)
{
	size_t cap = 1 << 24, n = 0;
	uint64_t *lat = malloc(cap * sizeof(*lat));
	char *buf = calloc(1, size);
	int fd = connect_to(sa);
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), t = start;

	while (t < end && n < cap) {
		uint64_t t0 = t;
		if (write_all(fd, buf, size) || read_all(fd, buf, size)) die("rr exchange");
		t = now_ns();
		lat[n++] = t - t0;
	}
	double elapsed = (double)(t - start) / 1e9;
	qsort(lat, n, sizeof(*lat), cmp_u64);
	printf("{\"test\":\"rr\",\"size\":%zu,\"count\":%zu,\"seconds\":%.4f,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f}\n",
	       size, n, elapsed, pct(lat, n, 50), pct(lat, n, 90), pct(lat, n, 99), pct(lat, n, 99.9));
	close(fd);
	return 0;
}

static int stream(struct sockaddr_in sa, size_t size, double secs)
{
	char *buf = calloc(1, size);
	int fd = connect_to(sa);
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), msgs = 0, total;

	do {
		for (int k = 0; k < 16; k++, msgs++)
			if (write_all(fd, buf, size)) die("stream write");
	} while (now_ns() < end);
	shutdown(fd, SHUT_WR);
	if (read_all(fd, (char *)&total, 8)) die("stream ack");
	double elapsed = (double)(now_ns() - start) / 1e9;
	if (total != msgs * size) {
		fprintf(stderr, "smload: sink counted %llu bytes, sent %llu\n", (unsigned long long)total,
			(unsigned long long)(msgs * size));
		return 1;
	}
	printf("{\"test\":\"%s\",\"size\":%zu,\"messages\":%llu,\"bytes\":%llu,\"seconds\":%.4f,\"MBps\":%.2f,\"msgps\":%.0f}\n",
	       nodelay ? "stream" : "nagle", size, (unsigned long long)msgs, (unsigned long long)total, elapsed, (double)total / elapsed / 1e6,
	       (double)msgs / elapsed);
	close(fd);
	return 0;
}

static int conn(struct sockaddr_in sa, size_t size, double secs)
{
	char *buf = calloc(1, size);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 }; /* RST on close: no TIME_WAIT pile-up */
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), n = 0, t;

	do {
		int fd = connect_to(sa);
		if (write_all(fd, buf, size) || read_all(fd, buf, size)) die("conn exchange");
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
		n++;
		t = now_ns();
	} while (t < end);
	double elapsed = (double)(t - start) / 1e9;
	printf("{\"test\":\"conn\",\"size\":%zu,\"connections\":%llu,\"seconds\":%.4f,\"cps\":%.1f}\n", size,
	       (unsigned long long)n, elapsed, (double)n / elapsed);
	return 0;
}

/* One response: headers up to the blank line, then Content-Length bytes (read into buf). */
static int http_response(int fd, char *buf, size_t cap)
{
	size_t have = 0;
	char *eoh = NULL;

	while (!eoh) {
		ssize_t n = read(fd, buf + have, cap - have - 1);
		if (n <= 0) {
			if (n < 0 && retry(fd, POLLIN)) continue;
			return -1;
		}
		have += (size_t)n;
		buf[have] = 0;
		eoh = strstr(buf, "\r\n\r\n");
		if (!eoh && have >= cap - 1) return -1;
	}
	if (strncmp(buf, "HTTP/1.1 200", 12)) return -1;
	const char *cl = strcasestr(buf, "\r\ncontent-length:");
	size_t body = cl ? (size_t)atol(cl + 17) : 0, got = have - (size_t)(eoh + 4 - buf);
	return body > got ? read_all(fd, buf, body - got) : 0;
}

static int http(struct sockaddr_in sa, double secs)
{
	static const char req[] = "GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: smload\r\n\r\n";
	size_t cap = 1 << 24, n = 0;
	uint64_t *lat = malloc(cap * sizeof(*lat));
	static char buf[65536];
	int fd = connect_to(sa);
	uint64_t start = now_ns(), end = start + (uint64_t)(secs * 1e9), t = start;

	while (t < end && n < cap) {
		uint64_t t0 = t;
		if (write_all(fd, req, sizeof(req) - 1) || http_response(fd, buf, sizeof(buf))) die("http request");
		t = now_ns();
		lat[n++] = t - t0;
	}
	double elapsed = (double)(t - start) / 1e9;
	qsort(lat, n, sizeof(*lat), cmp_u64);
	printf("{\"test\":\"http\",\"count\":%zu,\"seconds\":%.4f,\"rps\":%.1f,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f}\n",
	       n, elapsed, (double)n / elapsed, pct(lat, n, 50), pct(lat, n, 90), pct(lat, n, 99), pct(lat, n, 99.9));
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 5 && !strcmp(argv[1], "server"))
		server(parse_addr(argv[2], argv[3]), parse_addr(argv[2], argv[4]), NULL);
	if (argc == 6 && !strcmp(argv[1], "server")) {
		struct sockaddr_in h = parse_addr(argv[2], argv[5]);
		server(parse_addr(argv[2], argv[3]), parse_addr(argv[2], argv[4]), &h);
	}
	if (argc == 6) {
		struct sockaddr_in sa = parse_addr(argv[2], argv[3]);
		size_t size = (size_t)atol(argv[4]);
		double secs = atof(argv[5]);
		if (size < 1 || size > BUF_SIZE || secs <= 0 || secs > 600) {
			fprintf(stderr, "smload: size must be 1..%d and seconds 0..600\n", BUF_SIZE);
			return 2;
		}
		if (!strcmp(argv[1], "rr")) return rr(sa, size, secs);
		if (!strcmp(argv[1], "stream")) return stream(sa, size, secs);
		if (!strcmp(argv[1], "nagle")) {
			nodelay = 0;
			return stream(sa, size, secs);
		}
		if (!strcmp(argv[1], "conn")) return conn(sa, size, secs);
		if (!strcmp(argv[1], "http")) return http(sa, secs);
	}
	fprintf(stderr, "usage: smload server ADDR ECHO_PORT SINK_PORT [HTTP_PORT] | rr|stream|nagle|conn|http ADDR PORT SIZE SECONDS\n");
	return 2;
}
