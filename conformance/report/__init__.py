"""Report writers: terminal summary, versioned JSON, JUnit XML, static HTML, traceability matrix."""
