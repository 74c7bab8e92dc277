"""The command line: the root command (`main`), one module per area's command group, and the
output helpers they share. Like http/, the CLI is an edge: it turns arguments into calls of the
use cases and their results into tables or JSON, and holds no rule of its own."""
