"""The findings ledger: scans, findings and their lifecycle, history and the audit trail."""
