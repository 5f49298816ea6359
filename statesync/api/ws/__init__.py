"""statesync's websocket protocols: graphql-transport-ws and the legacy graphql-ws."""
