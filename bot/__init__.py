"""The face and composition root: settings, CLI, scan orchestration; wires the other packages."""
