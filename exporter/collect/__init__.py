"""Turn what the AMS client reads into one collection per round: polling, caching, job views."""
