"""Host scanners: file integrity (fim) and vulnerable installed packages (packages, osv)."""
