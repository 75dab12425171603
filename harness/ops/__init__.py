"""Users of campaigns: the default job, nightly and its report, bench, the FUSE floor, compare-abi,
the AFL++ lane, the ClusterFuzzLite export."""
