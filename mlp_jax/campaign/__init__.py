"""Many runs: named grids and studies, the launcher's scheduler, tables with their statistics,
plots. Imports core and store."""
