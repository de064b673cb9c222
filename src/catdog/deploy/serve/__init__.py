"""`catdog serve`: a web page and a JSON API over a trained run.

    >>> from catdog.deploy.serve.app import create_app, serve

- `app.py`: the app (its endpoints and errors), and `serve`, which runs it with uvicorn.
- `limits.py`: where it listens, and what one request may send.
- `uploads.py`: how a request's uploads become pixels, within those limits.
- `batcher.py`: the images of concurrent requests put through the model in one call.
- `connections.py`: what the server takes from a connection before the app sees a request,
  and the loopback `Host` rule.
"""
