"""Ask a running ``edgecnn serve`` to classify a picture, with the standard library only.

    edgecnn serve runs/latest/exports/model_int8.tflite --port 8080 &
    python examples/http_client.py http://127.0.0.1:8080 shoe.png

The same from a shell: curl --data-binary @shoe.png 'http://127.0.0.1:8080/classify?top_k=3'
"""

import json
import sys
import urllib.error
import urllib.request


def main(base_url: str, picture: str) -> int:
    """POST the picture's raw bytes to /classify and print the reply."""
    with open(picture, "rb") as f:
        body = f.read()
    request = urllib.request.Request(
        f"{base_url}/classify",  # ?top_k=N for another count than 3
        data=body,
        headers={"Content-Type": "application/octet-stream"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.load(response)
    except urllib.error.HTTPError as e:  # 4xx: the server says why, as JSON
        print(f"refused ({e.code}): {json.load(e)['error']}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:  # no server there, or it hung up
        reason = getattr(e, "reason", e)
        print(f"cannot reach {base_url}: {reason}", file=sys.stderr)
        return 1
    ranked = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in reply["top_k"])
    # "unknown": the model is not sure enough of any class; top_label is its best guess.
    label = f"unknown, most like {reply['top_label']}" if reply["unknown"] else reply["label"]
    print(
        f"{picture}: {label} ({reply['confidence']:.1%}) by {reply['model']} "
        f"in {reply['latency_ms']:.2f} ms; top {len(reply['top_k'])}: {ranked}"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
