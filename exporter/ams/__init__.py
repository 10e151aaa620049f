"""The Azure Media Services v2 REST client: query building, response reading, the job model."""
