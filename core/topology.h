/* CPU and NUMA topology.
 *
 * Discovered from libnuma (and the process's affinity mask) at start, or
 * injected through hy_config.topology so tests can fake several NUMA nodes on
 * a single-node machine. Where NUMA is unavailable every CPU is on node 0.
 */
#ifndef HY_CORE_TOPOLOGY_H
#define HY_CORE_TOPOLOGY_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HY_TOPO_MAX_CPUS 1024

struct hy_topology {
    /* Number of CPUs described (highest CPU id + 1). */
    int ncpus;
    /* Number of NUMA nodes (>= 1). */
    int nnodes;
    /* node_of[cpu]: NUMA node of each CPU, -1 if the CPU does not exist. */
    int node_of[HY_TOPO_MAX_CPUS];
    /* usable[cpu]: online and in the process's affinity mask. */
    bool usable[HY_TOPO_MAX_CPUS];
    /* True when the node numbers are real (libnuma says NUMA is available)
     * and memory may be bound to them; false for faked or degraded ones. */
    bool numa_memory;
};

/* Fills topo from the running machine: libnuma for nodes (one node when
 * numa_available() fails), sched_getaffinity for usable CPUs.
 * Errors: HY_EIO when the affinity mask cannot be read.
 * Context: anywhere, not signal-safe. */
int hy_topology_discover(struct hy_topology *topo);

/* Builds a fake topology: every usable CPU of the machine, spread
 * round-robin over nnodes nodes (numa_memory = false). For tests.
 * Errors: HY_EINVAL (nnodes < 1), HY_EIO. Context: anywhere. */
int hy_topology_fake(struct hy_topology *topo, int nnodes);

/* Lists the usable CPUs of topo in ascending order into cpus (borrowed, max
 * entries) and returns how many there are (may exceed max). */
int hy_topology_usable_cpus(const struct hy_topology *topo, int *cpus, int max);

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_TOPOLOGY_H */
