"""The baseline: a bare Flask endpoint that only answers 202, served like the real app."""

from flask import Flask

app = Flask(__name__)


@app.post("/webhooks/aistats")
def receive():
    """Answer 202 and do nothing else."""
    return "", 202


@app.get("/healthz")
def healthz():
    """Say the process is up (the bench waits on it)."""
    return {"status": "ok"}
