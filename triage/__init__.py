"""petition-triage command line: `triage --help`."""
