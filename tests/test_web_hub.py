"""Hugging Face ids on the web API (``gpuplan serve --hub on|off``), without the network: huggingface_hub's
download and metadata functions are replaced by a fake hub serving local files, errors and delays."""

from __future__ import annotations

import importlib
import json
import threading
import time
from types import SimpleNamespace

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
hf = pytest.importorskip("huggingface_hub")

from fastapi.testclient import TestClient  # noqa: E402

import gpuplan.model.resolve as resolve  # noqa: E402
from gpuplan.cli.main import main as cli_main  # noqa: E402
from gpuplan.web.app import create_app  # noqa: E402
from gpuplan.web.hub import HUB_ENV, HubConfigs, default_for_host  # noqa: E402

# Qwen/Qwen3-4B-Instruct-2507's config.json, the keys that set its size
# (https://huggingface.co/Qwen/Qwen3-4B-Instruct-2507/blob/main/config.json).
QWEN3_4B = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 2560, "intermediate_size": 9728,
    "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
    "vocab_size": 151936, "tie_word_embeddings": True, "max_position_embeddings": 262144, "rms_norm_eps": 1e-06,
    "rope_theta": 5000000, "attention_bias": False, "hidden_act": "silu", "torch_dtype": "bfloat16",
}
REPO = "Qwen/Qwen3-4B-Instruct-2507"


def hub_error(name: str, status: int) -> Exception:
    """One of huggingface_hub's own HTTP errors, with a response of ``status``."""
    cls = getattr(importlib.import_module("huggingface_hub.errors"), name)
    for module in ("httpx2", "httpx", "requests"):
        try:
            http = importlib.import_module(module)
            if module == "requests":
                response = http.Response()
                response.status_code = status
            else:
                response = http.Response(status, request=http.Request("GET", "https://huggingface.co/x"))
            return cls(f"{status} from the hub", response=response)
        except Exception:
            continue
    pytest.skip(f"cannot build huggingface_hub's {name} here")


class FakeHub:
    """Stands for the hub: ``repos`` maps an id to a config.json path or to the exception the hub raises."""

    def __init__(self, tmp_path, delay_s: float = 0.0) -> None:
        self.tmp_path, self.delay_s = tmp_path, delay_s
        self.repos: dict[str, object] = {}
        self.downloads: list[tuple[str, str, object]] = []
        self.metadata_calls: list[str] = []
        self.gate: threading.Event | None = None  # when set here, a download waits for it

    def add(self, repo_id: str, content: bytes | dict) -> None:
        path = self.tmp_path / (repo_id.replace("/", "--") + ".json")
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
        self.repos[repo_id] = path

    def _get(self, repo_id: str):
        item = self.repos.get(repo_id)
        if item is None:
            raise hub_error("RepositoryNotFoundError", 404)
        if isinstance(item, Exception):
            raise item
        return item

    def hf_hub_download(self, repo_id, filename, *, local_files_only=False, token=None, **kw):
        if local_files_only:  # the disk cache is empty
            raise hf.errors.LocalEntryNotFoundError("not in the cache")
        self.downloads.append((repo_id, filename, token))
        time.sleep(self.delay_s)
        if self.gate is not None:
            self.gate.wait(10)
        return str(self._get(repo_id))

    def get_hf_file_metadata(self, url, token=None, timeout=None, **kw):
        self.metadata_calls.append(url)
        repo_id = url.split("huggingface.co/")[1].split("/resolve/")[0]
        return SimpleNamespace(size=self._get(repo_id).stat().st_size)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    hub = FakeHub(tmp_path)
    hub.add(REPO, QWEN3_4B)
    for var in ("HF_HUB_OFFLINE", HUB_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hf, "hf_hub_download", hub.hf_hub_download)
    monkeypatch.setattr(hf, "get_hf_file_metadata", hub.get_hf_file_metadata)
    monkeypatch.setattr(resolve, "_hub_unreachable", lambda timeout_s=3.0: None)  # online, without a connect
    return hub


def post(client, command: str, body: dict):
    return client.post(f"/api/v1/{command}", json=body)


def test_a_hub_id_is_fetched_and_answers_as_the_cli(fake_hub, capsys):
    client = TestClient(create_app(hub=True))
    got = post(client, "params", {"model": REPO})
    assert got.status_code == 200, got.text
    assert cli_main(["params", REPO, "--json"]) == 0
    assert got.json() == json.loads(capsys.readouterr().out)
    # Qwen3-4B: 4.02B parameters with tied embeddings (its model card: 4.0B)
    assert 4.0e9 < got.json()["total"] < 4.05e9
    # only config.json, anonymously; its size asked first
    assert fake_hub.downloads[0] == (REPO, "config.json", False)
    assert fake_hub.metadata_calls and fake_hub.metadata_calls[0].endswith("/resolve/main/config.json")
    infer = post(client, "infer", {"model": REPO, "gpu": "h100-sxm", "context": "32k"})
    assert infer.status_code == 200 and infer.json()["memory"]["weights_bytes"] > 0
    plan = post(client, "plan", {"model": REPO, "gpu": "h100-sxm", "gpus": 8, "seq": 4096})
    assert plan.status_code == 200 and plan.json()["plans"]
    web = [d for d in fake_hub.downloads if d[2] is False]  # the command line's own fetches ask with the login
    assert len(web) == 1 and client.app.state.hub.fetches == 1, "the parsed config is kept: no second fetch"


def test_concurrent_requests_for_one_id_fetch_once(fake_hub):
    fake_hub.delay_s = 0.5  # the first fetch is still in flight when the others ask
    client = TestClient(create_app(hub=True))
    answers = []

    def ask(seq):
        answers.append(post(client, "train", {"model": REPO, "seq": seq}).status_code)

    threads = [threading.Thread(target=ask, args=(512 * (i + 1),)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 6
    assert len(fake_hub.downloads) == 1 and client.app.state.hub.fetches == 1


def test_waiting_requests_share_the_fetch_in_flight(fake_hub):
    import asyncio

    fake_hub.gate = threading.Event()
    hub = HubConfigs(True)

    async def scenario():
        tasks = [asyncio.create_task(hub.prefetch(REPO)) for _ in range(5)]
        for _ in range(100):  # until the one fetch reached the hub
            await asyncio.sleep(0.02)
            if fake_hub.downloads:
                break
        assert not any(t.done() for t in tasks)  # all five wait for it
        fake_hub.gate.set()
        return await asyncio.gather(*tasks)

    configs = asyncio.run(scenario())
    assert len(fake_hub.downloads) == 1 and hub.fetches == 1
    assert all(c == QWEN3_4B for c in configs)


@pytest.mark.parametrize("error, status, words", [
    (("RepositoryNotFoundError", 404), 422, "no such model repository"),
    (("RepositoryNotFoundError", 401), 422, "no such model repository"),
    (("GatedRepoError", 403), 422, "gated repository"),
    (("RemoteEntryNotFoundError", 404), 422, "has no config.json"),
    (("HfHubHTTPError", 403), 422, "refused access"),
    (("HfHubHTTPError", 429), 503, "limiting requests"),
    (("HfHubHTTPError", 502), 503, "HTTP 502"),
])
def test_hub_refusals_are_readable(fake_hub, error, status, words):
    fake_hub.repos["some-org/some-model"] = hub_error(*error)
    r = post(TestClient(create_app(hub=True)), "params", {"model": "some-org/some-model"})
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == "model" and body["value"] == "some-org/some-model" and words in body["rule"]
    assert "Traceback" not in r.text


def test_a_refused_id_is_not_asked_again_at_once(fake_hub, monkeypatch):
    import gpuplan.web.hub as web_hub

    client = TestClient(create_app(hub=True))
    for _ in range(3):
        assert post(client, "params", {"model": "no/such-model"}).status_code == 422
    assert len(fake_hub.metadata_calls) == 1
    monkeypatch.setattr(web_hub, "FAILURE_TTL_S", 0.0)  # once it is older, the hub is asked again
    client = TestClient(create_app(hub=True))
    for _ in range(2):
        assert post(client, "params", {"model": "no/such-model"}).status_code == 422
    assert len(fake_hub.metadata_calls) == 3


def test_the_command_line_gives_the_same_errors(fake_hub, capsys):
    fake_hub.repos["meta-llama/Some-Gated"] = hub_error("GatedRepoError", 403)
    assert cli_main(["params", "meta-llama/Some-Gated"]) == 2
    assert "gated repository" in capsys.readouterr().err
    assert cli_main(["params", "no/such-model"]) == 2
    assert "no such model repository" in capsys.readouterr().err
    assert cli_main(["params", "org/bad..id"]) == 2
    assert "Hugging Face repository id" in capsys.readouterr().err
    assert len(fake_hub.downloads) == 2  # the bad id never reached the hub


def test_connection_errors_are_503(fake_hub):
    fake_hub.repos["some-org/some-model"] = ConnectionError("connection reset")
    r = post(TestClient(create_app(hub=True)), "params", {"model": "some-org/some-model"})
    assert r.status_code == 503 and "could not fetch config.json" in r.json()["rule"]


def test_an_oversize_config_is_refused_before_download(fake_hub):
    fake_hub.add("big/model", json.dumps({**QWEN3_4B, "pad": "x" * (2 << 20)}).encode())
    client = TestClient(create_app(hub=True))
    r = post(client, "params", {"model": "big/model"})
    assert r.status_code == 422 and "more than the 1,048,576 bytes" in r.json()["rule"]
    assert fake_hub.downloads == [], "refused on its size, before it is downloaded"
    # a hub that gives no size (or the wrong one) is caught after the download
    fake_hub.get_hf_file_metadata = lambda url, **kw: SimpleNamespace(size=None)
    hf.get_hf_file_metadata = fake_hub.get_hf_file_metadata
    r = post(client, "params", {"model": "big/model"})
    assert r.status_code == 422 and "more than the 1,048,576 bytes" in r.json()["rule"]


def test_fetched_configs_keep_the_web_bounds(fake_hub):
    fake_hub.add("huge/layers", {**QWEN3_4B, "num_hidden_layers": 100_000})
    fake_hub.add("not/json", b"<html>")
    fake_hub.add("not/llm", {"model_type": "mamba", "hidden_size": 768})
    client = TestClient(create_app(hub=True))
    r = post(client, "params", {"model": "huge/layers"})
    assert r.status_code == 422 and "num_hidden_layers" in r.json()["rule"]
    r = post(client, "params", {"model": "not/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["rule"] and str(fake_hub.tmp_path) not in r.text
    r = post(client, "params", {"model": "not/llm"})
    assert r.status_code == 422 and "mamba" in r.text


def test_a_slow_hub_is_504_then_the_fetch_is_kept(fake_hub):
    fake_hub.gate = threading.Event()  # the hub does not answer until the test says so
    app = create_app(hub=True)
    hub = app.state.hub
    hub.time_limit_s = 0.2
    client = TestClient(app)
    r = post(client, "params", {"model": REPO})
    assert r.status_code == 504 and "did not give the config.json" in r.json()["rule"]
    fake_hub.gate.set()  # the fetch finishes in the background and is kept
    for _ in range(100):
        if hub.cached(REPO) is not None:
            break
        time.sleep(0.05)
    assert post(client, "params", {"model": REPO}).status_code == 200
    assert len(fake_hub.downloads) == 1


@pytest.mark.parametrize("name", [
    "-org/model", "org/model-", "org/.model", "org--x/model", "org/mo..del", "org/model.git", "o" * 97 + "/m",
    "org/model name", "org/model%2e",
])
def test_bad_ids_are_refused_before_any_network_call(fake_hub, monkeypatch, name):
    monkeypatch.setattr(resolve, "_hub_unreachable", lambda timeout_s=3.0: pytest.fail("network tried"))
    r = post(TestClient(create_app(hub=True)), "params", {"model": name})
    assert r.status_code == 422 and r.json()["field"] == "model"
    assert fake_hub.downloads == [] and fake_hub.metadata_calls == []


def test_paths_urls_and_file_names_are_never_read(fake_hub, tmp_path, monkeypatch):
    real_load = resolve.load_config_file

    def load(path):
        if "/acme/" in str(path):
            pytest.fail(f"read the local file {path}")
        return real_load(path)

    monkeypatch.setattr(resolve, "load_config_file", load)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "acme" / "tiny").mkdir(parents=True)  # 'acme/tiny' is a folder in the server's working folder
    (tmp_path / "acme" / "tiny" / "config.json").write_text(json.dumps({**QWEN3_4B, "num_hidden_layers": 2}))
    (tmp_path / "acme" / "x.yaml").write_text("model: {}")
    client = TestClient(create_app(hub=True))
    for name in ("/etc/passwd", "../x.json", "~/config.json", "https://example.com/config.json",
                 "acme/tiny/config.json", "acme/x.yaml", "acme\\tiny", "acme/tiny/"):
        assert post(client, "params", {"model": name}).status_code == 422, name
    # an id that is also a local folder is asked of the hub, never read from the folder
    r = post(client, "params", {"model": "acme/tiny"})
    assert r.status_code == 422 and "no such model repository" in r.json()["rule"]
    assert len(fake_hub.metadata_calls) == 1 and "/acme/tiny/" in fake_hub.metadata_calls[0]
    fake_hub.add("acme/tiny2", QWEN3_4B)
    (tmp_path / "acme" / "tiny2").mkdir()
    (tmp_path / "acme" / "tiny2" / "config.json").write_text(json.dumps({**QWEN3_4B, "num_hidden_layers": 2}))
    for command, body in (("params", {}), ("infer", {"gpu": "h100-sxm"}), ("train", {"seq": 1024})):
        r = post(client, command, {"model": "acme/tiny2", **body})
        assert r.status_code == 200, r.text
    assert post(client, "params", {"model": "acme/tiny2"}).json() == post(client, "params", {"model": REPO}).json()


def test_off_refuses_hub_ids_without_any_network_call(fake_hub, monkeypatch):
    monkeypatch.setattr(hf, "hf_hub_download", lambda *a, **k: pytest.fail("downloaded"))
    monkeypatch.setattr(resolve, "fetch_hub_config", lambda *a, **k: pytest.fail("fetched"))
    client = TestClient(create_app(hub=False))
    for command in ("params", "plan"):
        r = post(client, command, {"model": REPO, "gpu": "h100-sxm"} if command == "plan" else {"model": REPO})
        assert r.status_code == 422
        assert "does not fetch config.json files from the Hugging Face hub" in r.json()["rule"]
        assert "--hub on" in r.json()["hint"]
    # presets, and hub ids a preset carries, still resolve
    assert post(client, "params", {"model": "meta-llama/Llama-3.1-8B"}).status_code == 200
    assert client.get("/api/v1").json()["hub"]["enabled"] is False


def test_off_is_the_default_of_an_app_and_the_environment_sets_it(fake_hub, monkeypatch):
    assert create_app().state.hub.enabled is False
    monkeypatch.setenv(HUB_ENV, "on")
    assert create_app().state.hub.enabled is True
    monkeypatch.setenv(HUB_ENV, "maybe")
    with pytest.raises(ValueError, match=HUB_ENV):
        create_app()


@pytest.mark.parametrize("reason, setup", [
    ("HF_HUB_OFFLINE", lambda mp: mp.setenv("HF_HUB_OFFLINE", "1")),
    ("cannot be reached", lambda mp: mp.setattr(resolve, "_hub_unreachable",
                                                lambda timeout_s=3.0: "huggingface.co:443: Network is unreachable")),
    ("gpuplan[hub]", lambda mp: mp.setitem(__import__("sys").modules, "huggingface_hub", None)),
])
def test_an_offline_server_says_so_at_once(fake_hub, monkeypatch, reason, setup):
    setup(monkeypatch)
    client = TestClient(create_app(hub=True))
    started = time.monotonic()
    r = post(client, "params", {"model": REPO})
    assert r.status_code == 503 and reason in r.json()["rule"] and "into 'config'" in r.json()["hint"]
    # at once: no download tried (huggingface_hub's own retries take about 20 s offline)
    assert fake_hub.downloads == [] and fake_hub.metadata_calls == [] and time.monotonic() - started < 10


def test_hub_configs_lru_keeps_the_newest(fake_hub):
    hub = HubConfigs(True, entries=2)
    for i in range(3):
        fake_hub.add(f"org/m{i}", QWEN3_4B)
        hub.config(f"org/m{i}")
    assert hub.cached("org/m0") is None and hub.cached("org/m2") is not None and hub.fetches == 3


def test_serve_hub_default_follows_the_host(monkeypatch, capsys):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(hub=app.state.hub.enabled))
    for argv, enabled in ((["--host", "127.0.0.1"], True), (["--host", "::1"], True), (["--host", "0.0.0.0"], False),
                          (["--host", "0.0.0.0", "--hub", "on"], True), (["--hub", "off"], False)):
        monkeypatch.setenv(HUB_ENV, "")  # unset; serve writes it for its workers, and the test's end restores it
        assert cli_main(["serve", *argv]) == 0
        assert seen["hub"] is enabled, argv
    assert default_for_host("localhost") and not default_for_host("192.168.1.2")
    assert cli_main(["serve", "--hub", "maybe"]) == 2
    monkeypatch.setenv(HUB_ENV, "sometimes")
    assert cli_main(["serve"]) == 2 and HUB_ENV in capsys.readouterr().err
