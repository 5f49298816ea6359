"""The GraphQL API generated from the models, and the ASGI app that serves it."""
