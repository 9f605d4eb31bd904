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
    monkeypatch.setenv("JUDGE_KEY", "secret")
    judge = judge_from_config("openai", url=local_server, model="judge-model", api_key_env="JUDGE_KEY")
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
