// Vessel's connect filter for QEMU's user-mode network (docs/ARCHITECTURE.md, Network).
//
// Loaded into QEMU with LD_PRELOAD. libslirp opens one host socket per guest connection or
// datagram destination (connect for TCP, sendto for UDP and ICMP), so wrapping connect,
// sendto and sendmsg decides every destination a guest reaches, outside the guest. Rules come
// from VNF_RULES, written by Vessel (NetworkFilter.cs):
//
//   POLICY ENTRY...       POLICY: "on" (permit what no rule refuses) or "restrict" (refuse
//                         what no rule permits); ENTRY: +ADDR/PREFIX:PORT (allow) or
//                         -ADDR/PREFIX:PORT (deny), PORT 0 meaning any port.
//
// Order: a deny entry refuses; an allow entry permits (the host only through an entry naming
// one of its addresses exactly); the host itself (loopback, the unspecified address, every
// address of its interfaces) is refused unless this process listens there (slirp's own socket
// pairs); then the policy decides.
// Unix sockets (QMP, NBD, the agent) are never touched. A malformed rule stops QEMU at start.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_RULES 256
#define MAX_LOCALS 256

struct rule
{
    unsigned char addr[16]; // IPv4 as ::ffff:a.b.c.d
    int prefix;             // over the 128-bit form
    int port;               // 0: any
    int allow;
};

static struct rule rules[MAX_RULES];
static int rule_count;
static int policy_permits = 0;
static unsigned char locals[MAX_LOCALS][16];
static int local_count;

static int (*real_connect)(int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "vessel network filter: %s: %s\n", what, detail);
    _exit(70);
}

static void mapped(const struct in_addr *v4, unsigned char out[16])
{
    memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    memcpy(out + 12, v4, 4);
}

static int prefix_match(const unsigned char *a, const unsigned char *b, int prefix)
{
    int bytes = prefix / 8, bits = prefix % 8;
    if (memcmp(a, b, bytes) != 0)
    {
        return 0;
    }
    if (bits == 0)
    {
        return 1;
    }
    unsigned char mask = (unsigned char)(0xff << (8 - bits));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

static void parse_rule(char *text)
{
    if (rule_count == MAX_RULES)
    {
        die("too many rules", text);
    }
    struct rule *r = &rules[rule_count];
    if (text[0] != '+' && text[0] != '-')
    {
        die("rule must start with + or -", text);
    }
    r->allow = text[0] == '+';
    char *slash = strchr(text, '/');
    char *colon = strrchr(text, ':');
    if (slash == NULL || colon == NULL || colon < slash)
    {
        die("rule is not +ADDR/PREFIX:PORT", text);
    }
    *slash = 0;
    *colon = 0;
    char *end;
    long prefix = strtol(slash + 1, &end, 10);
    long port = strtol(colon + 1, &end, 10);
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, text + 1, &v4) == 1)
    {
        mapped(&v4, r->addr);
        prefix += 96;
        if (prefix < 96 || prefix > 128)
        {
            die("bad IPv4 prefix", slash + 1);
        }
    }
    else if (inet_pton(AF_INET6, text + 1, &v6) == 1)
    {
        memcpy(r->addr, &v6, 16);
        if (prefix < 0 || prefix > 128)
        {
            die("bad IPv6 prefix", slash + 1);
        }
    }
    else
    {
        die("bad address", text + 1);
    }
    if (port < 0 || port > 65535)
    {
        die("bad port", colon + 1);
    }
    r->prefix = (int)prefix;
    r->port = (int)port;
    rule_count++;
}

static void add_local(const unsigned char addr[16])
{
    if (local_count < MAX_LOCALS)
    {
        memcpy(locals[local_count++], addr, 16);
    }
}

__attribute__((constructor)) static void load(void)
{
    real_connect = dlsym(RTLD_NEXT, "connect");
    real_sendto = dlsym(RTLD_NEXT, "sendto");
    real_sendmsg = dlsym(RTLD_NEXT, "sendmsg");
    if (real_connect == NULL || real_sendto == NULL || real_sendmsg == NULL)
    {
        die("cannot find libc's socket calls", dlerror());
    }
    const char *env = getenv("VNF_RULES");
    if (env == NULL)
    {
        die("VNF_RULES is not set", "refusing to run unfiltered");
    }
    char *copy = strdup(env);
    char *save = NULL;
    char *policy = strtok_r(copy, " ", &save);
    if (policy == NULL || (strcmp(policy, "on") != 0 && strcmp(policy, "restrict") != 0))
    {
        die("policy must be on or restrict", env);
    }
    policy_permits = strcmp(policy, "on") == 0;
    for (char *t = strtok_r(NULL, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save))
    {
        parse_rule(t);
    }
    free(copy);
    // The host itself, by any of its own addresses, is as good as its loopback.
    struct ifaddrs *list;
    if (getifaddrs(&list) == 0)
    {
        for (struct ifaddrs *i = list; i != NULL; i = i->ifa_next)
        {
            unsigned char a[16];
            if (i->ifa_addr != NULL && i->ifa_addr->sa_family == AF_INET)
            {
                mapped(&((struct sockaddr_in *)i->ifa_addr)->sin_addr, a);
                add_local(a);
            }
            else if (i->ifa_addr != NULL && i->ifa_addr->sa_family == AF_INET6)
            {
                memcpy(a, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
                add_local(a);
            }
        }
        freeifaddrs(list);
    }
}

static int is_host(const unsigned char a[16])
{
    static const unsigned char v4_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 0};
    static const unsigned char v4_this[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
    static const unsigned char v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const unsigned char v6_any[16] = {0};
    if (prefix_match(a, v4_loopback, 104) || prefix_match(a, v4_this, 104)
        || memcmp(a, v6_loopback, 16) == 0 || memcmp(a, v6_any, 16) == 0)
    {
        return 1;
    }
    for (int i = 0; i < local_count; i++)
    {
        if (memcmp(a, locals[i], 16) == 0)
        {
            return 1;
        }
    }
    return 0;
}

// 1 when this process itself listens at the address and port: libslirp joins each guestfwd
// command to its connection through a socket pair it makes over loopback (listen, then connect),
// and a hostfwd port leads back to this same guest. Only looked up for refused host destinations.
static int own_listener(const unsigned char a[16], int port)
{
    DIR *fds = opendir("/proc/self/fd");
    if (fds == NULL)
    {
        return 0;
    }
    int found = 0;
    for (struct dirent *e = readdir(fds); e != NULL && !found; e = readdir(fds))
    {
        int fd = atoi(e->d_name);
        int listening = 0;
        socklen_t size = sizeof listening;
        struct sockaddr_storage bound;
        socklen_t length = sizeof bound;
        if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(fds)
            || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || !listening
            || getsockname(fd, (struct sockaddr *)&bound, &length) != 0)
        {
            continue;
        }
        unsigned char b[16];
        static const unsigned char v4_any[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
        static const unsigned char v6_any[16] = {0};
        if (bound.ss_family == AF_INET)
        {
            mapped(&((struct sockaddr_in *)&bound)->sin_addr, b);
            found = ntohs(((struct sockaddr_in *)&bound)->sin_port) == port && (memcmp(a, b, 16) == 0 || memcmp(b, v4_any, 16) == 0);
        }
        else if (bound.ss_family == AF_INET6)
        {
            memcpy(b, &((struct sockaddr_in6 *)&bound)->sin6_addr, 16);
            found = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port) == port && (memcmp(a, b, 16) == 0 || memcmp(b, v6_any, 16) == 0);
        }
    }
    closedir(fds);
    return found;
}

// 1 when the destination may be reached; non-IP destinations always may.
static int permitted(const struct sockaddr *to, socklen_t length)
{
    unsigned char a[16];
    int port;
    if (to == NULL)
    {
        return 1;
    }
    if (to->sa_family == AF_INET && length >= sizeof(struct sockaddr_in))
    {
        const struct sockaddr_in *in = (const struct sockaddr_in *)to;
        mapped(&in->sin_addr, a);
        port = ntohs(in->sin_port);
    }
    else if (to->sa_family == AF_INET6 && length >= sizeof(struct sockaddr_in6))
    {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)to;
        memcpy(a, &in6->sin6_addr, 16);
        port = ntohs(in6->sin6_port);
    }
    else
    {
        return to->sa_family != AF_INET && to->sa_family != AF_INET6;
    }
    for (int pass = 0; pass < 2; pass++)
    {
        for (int i = 0; i < rule_count; i++)
        {
            const struct rule *r = &rules[i];
            // The host is reached only through an allow entry that names one of its addresses
            // exactly (127.0.0.1/32:PORT), never through a wider one such as 0.0.0.0/0.
            if (r->allow == pass && prefix_match(a, r->addr, r->prefix) && (r->port == 0 || r->port == port)
                && !(pass == 1 && r->prefix != 128 && is_host(a)))
            {
                return pass;
            }
        }
    }
    return is_host(a) ? own_listener(a, port) : policy_permits;
}

int connect(int fd, const struct sockaddr *to, socklen_t length)
{
    if (!permitted(to, length))
    {
        errno = ECONNREFUSED;
        return -1;
    }
    return real_connect(fd, to, length);
}

ssize_t sendto(int fd, const void *buffer, size_t size, int flags, const struct sockaddr *to, socklen_t length)
{
    if (!permitted(to, length))
    {
        errno = ECONNREFUSED;
        return -1;
    }
    return real_sendto(fd, buffer, size, flags, to, length);
}

ssize_t sendmsg(int fd, const struct msghdr *message, int flags)
{
    if (message != NULL && !permitted((const struct sockaddr *)message->msg_name, message->msg_namelen))
    {
        errno = ECONNREFUSED;
        return -1;
    }
    return real_sendmsg(fd, message, flags);
}
