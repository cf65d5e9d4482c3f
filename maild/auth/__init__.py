"""Signing in: SASL exchanges (sans-I/O) and OAuth2 access tokens.

May import :mod:`maild.errors`, :mod:`maild.model`, :mod:`maild.fsutil` and the standard library, plus
oauthlib in :mod:`maild.auth.oauth2`. Never imports the protocol adapters, the config loader, the store
or the service layer: the adapters and the loader import this package, not the other way round.
"""
