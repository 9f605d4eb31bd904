import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from cooper_lib.data.records import QARecord
from cooper_lib.training.judges import OpenAIJudge, Reference, RuleJudge, judge_from_config


def answer(text: str) -> str:
    return f"<think>...</think><answer>{text}</answer>"


@pytest.mark.parametrize(
    ("text", "reference", "expected"),
    [
        (answer("\\boxed{B}"), Reference("B", "choice", choices=("x", "y")), True),
        (answer("\\boxed{(b)}"), Reference("B", "choice", choices=("x", "y")), True),
        (answer("\\boxed{A}"), Reference("B", "choice", choices=("x", "y")), False),
        (answer("\\boxed{C}"), Reference("B", "choice", choices=("x", "y")), False),  # not an option
        (answer("\\boxed{Yes}"), Reference("yes", "yes-no"), True),
        (answer("\\boxed{no}"), Reference("yes", "yes-no"), False),
        (answer("There are \\boxed{three}"), Reference("3", "count"), True),
        (answer("\\boxed{4}"), Reference("3", "count", value=3), False),
        (answer("\\boxed{2.1 m}"), Reference("2", "number", unit="m", value=2.0), True),
        (answer("\\boxed{205 cm}"), Reference("2", "number", unit="m", value=2.0), True),
        (answer("\\boxed{2.3 m}"), Reference("2", "number", unit="m", value=2.0), False),
        (answer("\\boxed{1.95}"), Reference("2", "number", unit="m", value=2.0), True),  # unit assumed
        (answer("\\boxed{no number}"), Reference("2", "number", unit="m"), False),
        (answer("\\boxed{The Red Sphere.}"), Reference("the red sphere", "text"), True),
    ],
)
def test_rule_judge(text, reference, expected):
    assert RuleJudge(number_tolerance=0.1)(text, reference) is expected


def test_reference_from_qa_record_and_validation():
    record = QARecord(
        "q1", "img.png", "How far?", "1.5", "number", "distance_camera", "positive", unit="m", value=1.5
    )
    ref = Reference.from_record(record)
    assert ref == Reference("1.5", "number", "How far?", (), "m", 1.5)
    assert Reference.from_record(record.to_dict()) == ref
    with pytest.raises(ValueError, match="answer_type"):
        Reference("x", "essay")
    with pytest.raises(ValueError, match="numeric"):
        Reference("many", "count")
    for blank in ("", " ", None):  # no answer: every rollout would score 0
        with pytest.raises(ValueError, match="answer: expected a non-empty reference answer"):
            Reference.from_record(
                {**record.to_dict(), "answer": blank, "answer_type": "yes_no", "value": None}
            )


class _Handler(BaseHTTPRequestHandler):
    reply = "True"
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers.get("Authorization"), body))
        data = json.dumps({"choices": [{"message": {"content": type(self).reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_server():
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_openai_judge_speaks_the_chat_completions_protocol(local_server, monkeypatch):
    monkeypatch.setenv("COOPER_JUDGE_API_KEY", "secret")
    judge = judge_from_config("openai", url=local_server, model="judge-model")
    ref = Reference("B", "choice", "Which is closer?", ("x", "y"))
    _Handler.reply = "True"
    assert judge(answer("\\boxed{B}"), ref) is True
    path, auth, body = _Handler.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer secret" and body["model"] == "judge-model"
    assert "Which is closer?" in body["messages"][1]["content"]
    _Handler.reply = "False."
    assert judge(answer("\\boxed{A}"), ref) is False
    _Handler.reply = "maybe"
    with pytest.raises(RuntimeError, match="True or False"):
        judge(answer("\\boxed{A}"), ref)


def test_openai_judge_raises_when_unreachable():
    judge = OpenAIJudge("http://127.0.0.1:9/v1", "m", timeout=0.5, max_retries=2)
    with pytest.raises(RuntimeError, match="no answer after 2 attempts"):
        judge(answer("\\boxed{A}"), Reference("A", "choice"))


def test_judge_from_config_validates():
    assert isinstance(judge_from_config("rule", number_tolerance=0.2), RuleJudge)
    with pytest.raises(ValueError, match="url"):
        judge_from_config("openai")
    with pytest.raises(ValueError, match="kind"):
        judge_from_config("oracle")


class _Redirect(BaseHTTPRequestHandler):
    """Answers every request with a 302 to `target` (set per test) and records the headers."""

    target = ""
    seen: list = []

    def do_POST(self):  # noqa: N802
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(302)
        self.send_header("Location", type(self).target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802 (urllib turns a redirected POST into a GET)
        type(self).seen.append(self.headers.get("Authorization"))
        data = json.dumps({"choices": [{"message": {"content": "True"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def servers():
    """Two loopback servers on different ports (two origins); stopped after the test."""
    started = [HTTPServer(("127.0.0.1", 0), _Redirect) for _ in range(2)]
    for server in started:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    _Redirect.seen = []
    yield [f"http://127.0.0.1:{s.server_port}" for s in started]
    for server in started:
        server.shutdown()
        server.server_close()


def test_openai_judge_keeps_the_key_from_other_origins_on_redirect(servers):
    first, second = servers
    judge = OpenAIJudge(f"{first}/v1", "m", api_key="secret", timeout=5, max_retries=1)
    _Redirect.target = f"{second}/elsewhere"  # another port: another origin
    assert judge(answer("\\boxed{A}"), Reference("A", "choice")) is True
    assert _Redirect.seen == ["Bearer secret", None]
    _Redirect.seen, _Redirect.target = [], f"{first}/same"  # the same origin gets it again
    assert judge(answer("\\boxed{A}"), Reference("A", "choice")) is True
    assert _Redirect.seen == ["Bearer secret", "Bearer secret"]


def test_openai_judge_refuses_a_redirect_to_plain_http_elsewhere(servers):
    judge = OpenAIJudge(f"{servers[0]}/v1", "m", api_key="secret", timeout=5, max_retries=1)
    _Redirect.target = "http://judge.example.org/v1/chat/completions"
    with pytest.raises(ValueError, match="judge redirect.*https"):
        judge(answer("\\boxed{A}"), Reference("A", "choice"))
    assert _Redirect.seen == ["Bearer secret"]


@pytest.mark.parametrize(
    "url", ["http://judge.example.org/v1", "http://10.0.0.2:8000/v1", "ftp://x/v1", "judge"]
)
def test_openai_judge_needs_https_except_on_loopback(url):
    with pytest.raises(ValueError, match="base_url"):
        OpenAIJudge(url, "m")
    for ok in ("https://judge.example.org/v1", "http://localhost:8000/v1", "http://[::1]:8000/v1"):
        assert OpenAIJudge(ok, "m").base_url == ok


def test_the_key_comes_from_the_fixed_variable_or_an_argument(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    with pytest.raises(ValueError, match="COOPER_JUDGE_API_KEY only.*'HF_TOKEN'"):
        judge_from_config("openai", url="https://j.example.org/v1", model="m", api_key_env="HF_TOKEN")
    judge = judge_from_config(
        "openai", url="https://j.example.org/v1", model="m", api_key_env="COOPER_JUDGE_API_KEY"
    )
    assert judge.api_key is None and "secret" not in repr(OpenAIJudge("https://j.example.org", "m", "secret"))


def test_a_grpo_config_naming_another_key_variable_is_refused():
    from cooper_lib.training.config import GRPOConfig

    with pytest.raises(ValueError, match="judge_api_key_env: .*COOPER_JUDGE_API_KEY only"):
        GRPOConfig.from_dict({"judge_api_key_env": "OPENAI_API_KEY"})
    assert GRPOConfig.from_dict({"judge_api_key_env": "COOPER_JUDGE_API_KEY"}).judge_api_key_env
