# A Flask app whose dependencies come from PyPI (requirements.txt), as App Runner's
# Python samples are.
import os
from importlib.metadata import version

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return f"Hello from Flask {version('flask')}\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
