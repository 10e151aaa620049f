"""A hostile Azure AD + AMS v2 server written from the wire protocol, and scenarios against it."""
