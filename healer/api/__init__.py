"""The HTTP edge: `app.create_app` wires settings, middleware, the routers and the model's life cycle."""
