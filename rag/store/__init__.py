"""What the service keeps about questions: answers, votes, leases, curated items and resolutions (one module
per concern), the recorder and its spool, and the removal of personal data."""
