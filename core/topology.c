#define _GNU_SOURCE
#include "topology.h"

#include <numa.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"

static int read_affinity(struct hy_topology *topo)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return HY_EIO;
    long conf = sysconf(_SC_NPROCESSORS_CONF);
    if (conf < 1)
        conf = 1;
    int max = (int)conf;
    for (int c = 0; c < CPU_SETSIZE && c < HY_TOPO_MAX_CPUS; c++)
        if (CPU_ISSET(c, &set) && c + 1 > max)
            max = c + 1;
    if (max > HY_TOPO_MAX_CPUS)
        max = HY_TOPO_MAX_CPUS;
    topo->ncpus = max;
    for (int c = 0; c < max; c++) {
        topo->usable[c] = CPU_ISSET(c, &set);
        topo->node_of[c] = 0;
    }
    return 0;
}

int hy_topology_discover(struct hy_topology *topo)
{
    memset(topo, 0, sizeof(*topo));
    for (int c = 0; c < HY_TOPO_MAX_CPUS; c++)
        topo->node_of[c] = -1;
    int rc = read_affinity(topo);
    if (rc)
        return rc;
    topo->nnodes = 1;
    topo->numa_memory = false;
    if (numa_available() >= 0) {
        int maxnode = numa_max_node();
        topo->nnodes = maxnode + 1;
        topo->numa_memory = topo->nnodes > 1;
        for (int c = 0; c < topo->ncpus; c++) {
            int n = numa_node_of_cpu(c);
            topo->node_of[c] = n < 0 ? 0 : n;
        }
    }
    return 0;
}

int hy_topology_fake(struct hy_topology *topo, int nnodes)
{
    if (nnodes < 1)
        return HY_EINVAL;
    int rc = hy_topology_discover(topo);
    if (rc)
        return rc;
    int i = 0;
    for (int c = 0; c < topo->ncpus; c++)
        if (topo->usable[c])
            topo->node_of[c] = i++ % nnodes;
    topo->nnodes = nnodes;
    topo->numa_memory = false;
    return 0;
}

int hy_topology_usable_cpus(const struct hy_topology *topo, int *cpus, int max)
{
    int n = 0;
    for (int c = 0; c < topo->ncpus; c++) {
        if (!topo->usable[c])
            continue;
        if (n < max)
            cpus[n] = c;
        n++;
    }
    return n;
}
