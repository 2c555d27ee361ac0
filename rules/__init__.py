"""The rule catalog (YAML: rules, frameworks, tasks) and the engine that evaluates it."""
