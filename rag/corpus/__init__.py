"""FAQ sources read into entries: files, web pages, chunking, the team's curated decisions applied, the
sources' quality report."""
