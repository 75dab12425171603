"""famfs tools on files: the mkfs / replay / fsck / mount verbs, the CLI device-argument syntax, the probe log."""
