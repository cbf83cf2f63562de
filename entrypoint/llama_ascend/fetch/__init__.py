"""Weights into a volume: fetch a model from ModelScope or HuggingFace (or verify a local one) — atomic, resumable,
verified, and safe when several pods share the volume.

Layout (hub sources), under the volume root `model.path`:

    <model.path>/<source>/<owner>/<name>/<revision>/          the model dir vLLM loads (Config.model_dir)
        .llama-ascend-fetch.json                               the completion marker, written last
    <model.path>/<source>/<owner>/<name>/.<revision>.partial/  downloads in progress (resumed from here)
    <model.path>/<source>/<owner>/<name>/.<revision>.lease     who is fetching right now (see lease.py)
    <model.path>/.cache/{modelscope,huggingface}/              the clients' own state (locks, session ids)
    <model.path>/.metrics/llama_ascend_fetch.prom              Prometheus textfile (or $LLAMA_ASCEND_FETCH_METRICS)

Guarantees: files are downloaded into the `.partial` dir under `<name>.incomplete` and renamed to their final name
only once their size and sha256 (where the hub lists one) match; the model dir appears — by one rename — only when
every selected file is there, and the marker is written last. A complete dir is recognised from the marker alone:
no network and no re-hashing (`is_complete`). One fetcher per model dir holds the lease; the others wait for it,
then find the marker.

ModelScope goes through the real `modelscope` client (modelscope-hub: listing, Range resume from `.incomplete`,
sha256 check, retries). HuggingFace goes through `huggingface_hub` for the revision, the file tree (sizes, sha256)
and the authenticated URLs; the bytes are streamed by `huggingface.HuggingFace._get` because huggingface_hub writes each file
to a per-process temporary name, so a killed download would restart from zero.

One module per concern: `layout` (where things go, the marker, `is_complete`), `verify` (digests, safetensors),
`plan` (what remains, the commit), `progress`, `metrics` (the textfile), `hub` / `modelscope` / `huggingface` (the
sources, imported only to download), `settings` (the tunables) and `run` (`fetch()` itself).
"""

from llama_ascend.fetch.layout import JOURNAL, MARKER, is_complete
from llama_ascend.fetch.metrics import metrics_path
from llama_ascend.fetch.results import FetchFailed, FetchResult
from llama_ascend.fetch.run import fetch
from llama_ascend.fetch.verify import local_problems

__all__ = ["JOURNAL", "MARKER", "FetchFailed", "FetchResult", "fetch", "is_complete", "local_problems", "metrics_path"]
