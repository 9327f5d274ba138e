"""The only writer of index versions: builds, web sync, the confidence fitted on the FAQ, the gap report
and the team's curation that republishes."""
