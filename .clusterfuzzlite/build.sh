#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build: install famfs-fuzz, write one standalone Atheris fuzzer per
# in-process target (with its seed corpus zip, options and the famfs dictionary), and pack each
# with the base image's compile_python_fuzzer (PyInstaller). Targets that need a FUSE mount, qemu
# or a command (mount_e2e, daemon_kill, external) are not built here; our nightly runs them.
cd "$SRC/famfs-fuzz"
pip3 install .
work=$(mktemp -d)
python3 -m harness.ops.standalone "$work" corpora
for script in "$work"/*_fuzzer.py; do
    name=$(basename "$script" .py)
    target=${name%_fuzzer}
    # the target module is imported by name at run time: tell PyInstaller to pack it
    compile_python_fuzzer "$script" --hidden-import "targets.$target" --collect-submodules harness
    cp "$work/$name.options" "$work/${name}_seed_corpus.zip" "$OUT/"
done
cp "$work/famfs.dict" "$OUT/"
