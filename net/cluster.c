/* The static cluster file: "name node_id [mac] ip base_port" per line (the
 * MAC only for the DPDK transport). */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "errors.h"

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char tail;
    if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
        return -1;
    for (int i = 0; i < 6; i++) {
        if (v[i] > 255)
            return -1;
        mac[i] = (uint8_t)v[i];
    }
    return 0;
}

int hy_dist_cluster_load(const char *path, struct hy_dist_peer *peers, size_t max, size_t *count)
{
    if (!path || !count || (max && !peers))
        return HY_EINVAL;
    FILE *f = fopen(path, "r");
    if (!f)
        return HY_EIO;
    char line[512];
    size_t n = 0;
    unsigned lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char name[HY_DIST_NAME_MAX], mac[32], ip[32], portstr[32];
        unsigned long id, port = 0;
        char extra[2];
        int k = sscanf(line, "%63s %lu %31s %31s %31s %1s", name, &id, mac, ip, portstr, extra);
        if (k <= 0)
            continue; /* blank */
        struct hy_dist_peer p;
        memset(&p, 0, sizeof(p));
        struct in_addr a;
        bool ok;
        char *end = NULL;
        if (k == 4) { /* no MAC: "name node_id ip base_port" */
            port = strtoul(ip, &end, 10);
            ok = end && !*end && inet_pton(AF_INET, mac, &a) == 1;
        } else {
            if (k == 5)
                port = strtoul(portstr, &end, 10);
            ok = k == 5 && end && !*end && parse_mac(mac, p.mac) == 0 &&
                 inet_pton(AF_INET, ip, &a) == 1;
        }
        if (!ok || id == 0 || id > 0xffffff || port == 0 || port > 65535) {
            fprintf(stderr,
                    "hydra: %s:%u: malformed cluster line (want: name node_id [mac] ip "
                    "base_port)\n",
                    path, lineno);
            rc = HY_EINVAL;
            break;
        }
        strcpy(p.name, name);
        p.node_id = (uint32_t)id;
        p.ip = ntohl(a.s_addr);
        p.base_port = (uint16_t)port;
        if (n < max)
            peers[n] = p;
        n++;
    }
    fclose(f);
    if (rc)
        return rc;
    *count = n;
    return n > max ? HY_ENOSPC : 0;
}
