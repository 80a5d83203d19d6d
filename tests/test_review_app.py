"""`curator review` driven in Debian's headless Chromium through Selenium, against the real server on loopback;
then `curator gate` obeys the ledger, `curator lineage` shows an edited pair's history and the report's
review section renders.

The tests run in file order on one shared world (the report-test runs and releases of `test_lineage_diff`,
plus a run holding a pair with <script> and <img onerror> markup), one review ledger and one record of what
the browser did (`Story`).
"""
from __future__ import annotations

import json
import threading
import time
from importlib.util import find_spec
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl
import pytest

from curator.cli import main
from curator.records import build_messages, make_pair
from curator.review.ledger import read_ledger_lines
from curator.spec import REVIEW_REASONS
from review_helpers import ARTIFACTS, CHROMEDRIVER, CHROMIUM, ReviewServer, chrome, console_errors
from test_lineage_diff import SPEC, build_world, write_run

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None or find_spec("selenium") is None,
                                reason="needs chromium, chromium-driver (apt-get install -y chromium chromium-driver) "
                                       "and selenium (pip install -e '.[dev]')")

XSS_USER = 'Describe this image: <img src=x onerror="window.__pwned=1">'
XSS_ANSWER = "<script>window.__pwned = 2</script>It shows <b>nothing</b> & more."
EDITED = "Edited: the answer, checked twice."
REVIEW_SPEC = SPEC.replace("  minhash: {threshold: 0.8, num_perm: 128, ngram: 5}",
                           "  minhash: {threshold: 0.8, num_perm: 128, ngram: 5, against_releases: false}\n"
                           "  human_review: {protect_from: [content_defects]}")


@dataclass
class Story:
    data: Path
    spec: Path
    ledger: Path
    xss_id: str
    edited: tuple[str, str] | None = None  # (original id, original response)
    new_id: str | None = None  # the edited pair's id in release-v3
    server: ReviewServer | None = None
    driver: object = None


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    data = tmp_path_factory.mktemp("review") / "data"
    build_world(data)
    xss = make_pair(build_messages(XSS_USER, "", XSS_ANSWER), task_family="qa", format="free_text",
                    difficulty="medium", length_band="any", source="human", strategy="handwritten")
    write_run(data / "runs" / "third", [xss])
    spec = data.parent / "review-spec.yaml"
    spec.write_text(REVIEW_SPEC)
    s = Story(data, spec, data.parent / "reviews" / "ledger.jsonl", xss["id"])
    s.driver = chrome(data.parent / "chrome")
    yield s
    s.driver.quit()
    if s.server:
        s.server.close()


def start(s: Story) -> ReviewServer:
    s.server = ReviewServer(s.data, "first", "second", "third", "--ledger", str(s.ledger), "--sample", "100",
                            "--overlap", "1", "--spec", str(s.spec))
    return s.server


# ---------------------------------------------------------------- the browser

def press(s: Story, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(s.driver).send_keys(*keys).perform()


def body(s: Story, name: str) -> str | None:
    from selenium.webdriver.common.by import By
    return s.driver.find_element(By.TAG_NAME, "body").get_attribute(f"data-{name}")


def wait_for(s: Story, name: str, value: object) -> None:
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(s.driver, 15).until(lambda d: body(s, name) == str(value))


def text(s: Story, element_id: str) -> str:
    from selenium.webdriver.common.by import By
    return s.driver.find_element(By.ID, element_id).text


def open_as(s: Story, reviewer: str) -> None:
    s.driver.get(f"{s.server.base}/?reviewer={reviewer}")
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(s.driver, 15).until(lambda d: body(s, "shown") is not None)


def decide(s: Story, seq: int, *keys: str) -> str:
    """Press `keys` on the shown pair, wait until the page shows decision `seq` recorded; the pair's id."""
    pair = text(s, "pair-id")
    for key in keys:
        press(s, key)
    wait_for(s, "seq", seq)
    return pair


def enter() -> str:
    from selenium.webdriver.common.keys import Keys
    return Keys.ENTER


def queue_states(s: Story) -> dict[str, str]:
    """Queue position -> the row's state class, as the list on the page shows it."""
    from selenium.webdriver.common.by import By
    return {li.get_attribute("data-index"): li.get_attribute("class").replace(" current", "")
            for li in s.driver.find_elements(By.CSS_SELECTOR, "#queue li")}


def shoot(s: Story, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    assert s.driver.save_screenshot(str(ARTIFACTS / f"review-{name}.png"))


def live(s: Story) -> dict[tuple[str, str], str]:
    """(pair id, reviewer) -> live decision, from the ledger file."""
    out: dict[tuple[str, str], list[dict]] = {}
    for line in read_ledger_lines(s.ledger):
        key = (line["pair_id"], line["reviewer"])
        if line["decision"] == "undo":
            out[key] = [d for d in out[key] if d["seq"] != line["undoes"]]
        else:
            out.setdefault(key, []).append(line)
    return {k: v[-1]["decision"] for k, v in out.items() if v}


# ---------------------------------------------------------------- tests, in order

def test_keyboard_review_with_reject_edit_undo_and_reload(story):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    s = story
    server = start(s)
    assert server.url.startswith("http://127.0.0.1:") and "token" not in server.url
    open_as(s, "alice")
    assert body(s, "shown") == "0" and text(s, "verdict") == "undecided"
    first = decide(s, 1, "a")
    assert body(s, "shown") == "1"
    rejected = decide(s, 2, "r", "2", "too vague", enter())
    assert first != rejected and body(s, "shown") == "2"
    while not (text(s, "why").startswith("sample") and text(s, "cell").startswith("qa")
               and text(s, "pair-id") != s.xss_id):  # walk on to a word problem no check flagged
        shown = int(body(s, "shown"))
        press(s, "j")
        wait_for(s, "shown", shown + 1)
    original = text(s, "pair-id")
    response = s.driver.find_elements("css selector", ".msg.assistant pre")[-1].text
    press(s, "e")
    area = s.driver.find_element("id", "edit-text")
    assert area.get_attribute("value") == response
    area.clear()
    area.send_keys(EDITED)
    ActionChains(s.driver).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
    wait_for(s, "seq", 3)
    s.edited = (original, response)
    after_edit = int(body(s, "shown"))
    undone = decide(s, 4, "a")
    decide(s, 5, "u")
    assert (body(s, "shown"), text(s, "pair-id"), text(s, "verdict")) == (str(after_edit), undone, "undecided")
    press(s, "k")
    wait_for(s, "shown", after_edit - 1)
    assert text(s, "verdict") == "edit" and EDITED in text(s, "conversation")  # the diff, under the conversation
    press(s, "j")
    wait_for(s, "shown", after_edit)
    assert decide(s, 6, "r", "1", enter()) == undone

    s.driver.refresh()
    WebDriverWait(s.driver, 15).until(lambda d: body(s, "shown") is not None)
    assert body(s, "shown") == "2"  # the first pair alice has not decided
    states = queue_states(s)
    assert (states["0"], states["1"], states[str(after_edit - 1)], states[str(after_edit)]) == (
        "done-accept", "done-reject", "done-edit", "done-reject")
    assert sum(v.startswith("done") for v in states.values()) == 4
    s.driver.find_element("css selector", '#queue li[data-index="1"]').click()
    wait_for(s, "shown", 1)
    assert text(s, "verdict") == f"reject: {REVIEW_REASONS[1]} — too vague"
    shoot(s, "reviewed")


def test_pair_markup_is_inert(story):
    s = story
    queue = httpx.get(f"{s.server.base}/api/queue", params={"reviewer": "alice", "limit": 200}).json()
    index = next(i["index"] for i in queue["items"] if i["id"] == s.xss_id)
    s.driver.find_element("css selector", f'#queue li[data-index="{index}"]').click()
    wait_for(s, "shown", index)
    conversation = text(s, "conversation")
    assert XSS_USER in conversation and "<script>window.__pwned = 2</script>" in conversation
    assert s.driver.find_elements("css selector", "#conversation img, #conversation script, #conversation b") == []
    assert s.driver.execute_script("return window.__pwned === undefined")
    shoot(s, "markup-inert")
    decide(s, 7, "r", "3", enter())
    assert console_errors(s.driver) == []


def test_two_reviewers_see_the_pairs_asked_of_two(story):
    s = story
    open_as(s, "bob")
    assert body(s, "shown") == "0" and "alice" in text(s, "others")  # decided by alice, asked of two
    p0 = decide(s, 8, "r", "1", enter())
    p1 = decide(s, 9, "a")
    assert (live(s)[(p0, "bob")], live(s)[(p1, "bob")], live(s)[(p1, "alice")]) == ("reject", "accept", "reject")
    shoot(s, "second-reviewer")


def test_kill_9_mid_review_loses_nothing_acknowledged(story):
    s = story
    token, acked, stop = s.server.csrf(), [], threading.Event()

    def burst():
        with httpx.Client(base_url=s.server.base, headers={"X-CSRF-Token": token}) as client:
            while not stop.is_set():
                try:
                    r = client.post("/api/decide", json={"reviewer": "carol", "index": 0, "decision": "accept"})
                except httpx.TransportError:
                    return
                assert r.status_code == 200
                acked.append(r.json()["seq"])

    worker = threading.Thread(target=burst)
    worker.start()
    while len(acked) < 20 and worker.is_alive():
        time.sleep(0.001)
    s.server.kill()
    stop.set()
    worker.join()
    lines = read_ledger_lines(s.ledger)
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert set(acked) <= {line["seq"] for line in lines}
    assert len(lines) - 9 - len(acked) <= 1  # at most the decision in flight was written but never acknowledged

    start(s)
    open_as(s, "alice")
    assert body(s, "shown") == "2"
    states = queue_states(s)
    assert (states["0"], states["1"]) == ("done-accept", "done-reject")
    assert sum(v.startswith("done") for v in states.values()) == 5
    decide(s, len(lines) + 1, "a")
    code, err = s.server.interrupt()
    assert code == 0 and "stopped;" in err


def test_state_changes_need_the_csrf_token_and_same_origin(story):
    s = story
    server = start(s)
    try:
        post = {"reviewer": "mallory", "index": 0, "decision": "reject", "reason": "other"}
        assert httpx.post(server.base + "/api/decide", json=post).status_code == 403
        headers = {"X-CSRF-Token": server.csrf(), "Origin": "http://evil.example"}
        assert httpx.post(server.base + "/api/decide", json=post, headers=headers).status_code == 403
        form = httpx.post(server.base + "/api/decide", data=post, headers={"X-CSRF-Token": server.csrf()})
        assert form.status_code == 415
        page = httpx.get(server.base + "/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert httpx.get(server.base + "/", headers={"Host": "rebound.example"}).status_code == 400
        assert all(line["reviewer"] != "mallory" for line in read_ledger_lines(s.ledger))
    finally:
        server.close()
    outside = ReviewServer(s.data, "third", "--host", "0.0.0.0", "--ledger", str(s.ledger.with_name("t.jsonl")))
    try:
        token = outside.url.split("token=")[1]
        local = outside.base.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(local + "/").status_code == 403
        assert httpx.get(local + "/api/queue", params={"reviewer": "x"}).status_code == 403
        with httpx.Client() as client:
            page = client.get(local + "/", params={"token": token}, follow_redirects=True)
            assert page.status_code == 200 and "token=" not in str(page.url)
            assert client.get(local + "/api/queue", params={"reviewer": "x"}).json()["total"] == 1
            csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
            edit = {"reviewer": "x", "index": 0, "decision": "edit", "field": "instruction", "text": "Describe it."}
            assert client.post(local + "/api/decide", json=edit, headers={"X-CSRF-Token": csrf}).status_code == 200
        line = read_ledger_lines(s.ledger.with_name("t.jsonl"))[-1]
        assert (line["field"], line["old_text"], line["messages"][0]["content"]) == ("instruction", XSS_USER,
                                                                                     "Describe it.")
        assert line["diff"].endswith(f"\n-{XSS_USER}\n+Describe it.")
    finally:
        outside.close()


def test_review_refuses_a_ledger_inside_a_release(story, monkeypatch, capsys):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(story.data))
    inside = story.data / "releases" / "release-v2" / "ledger.jsonl"
    assert main(["review", "release-v2", "--ledger", str(inside)]) == 2
    assert "write-once" in capsys.readouterr().err and not inside.exists()


def test_gate_obeys_the_ledger(story, monkeypatch, capsys):
    s = story
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(s.data))
    verdicts: dict[str, str] = {}
    for (pair, _), decision in live(s).items():
        rank = {"accept": 0, "reject": 1, "edit": 2}
        if rank[decision] >= rank.get(verdicts.get(pair, "accept"), 0):
            verdicts[pair] = decision
    rejects = sorted(p for p, d in verdicts.items() if d == "reject")
    assert len(rejects) == 4 and list(verdicts.values()).count("edit") == 1
    code = main(["gate", "first", "second", "third", "--spec", str(s.spec), "--review-ledger", str(s.ledger),
                 "--name", "reviewed"])
    assert code in (0, 1), capsys.readouterr().err
    release = s.data / "releases" / "release-v3"
    manifest = json.loads((release / "manifest.json").read_text())
    review_check = manifest["checks"][0]
    assert review_check["name"] == "human_review"
    assert (review_check["removed"], review_check["added"]) == (5, 1)
    assert (review_check["stats"]["rejected"], review_check["stats"]["edited"]) == (4, 1)
    ledger = pl.read_parquet(release / "rejected.parquet").filter(pl.col("check") == "human_review").to_dicts()
    reasons = {r["id"]: r["reason"] for r in ledger}
    assert sorted(reasons) == sorted(rejects + [s.edited[0]])
    assert "too vague (alice," in reasons[[p for p in rejects if "too vague" in reasons[p]][0]]
    assert reasons[s.xss_id].startswith(f"human_review: {REVIEW_REASONS[2]} (alice, ")
    new_id = reasons[s.edited[0]].split("replaced by ")[1].split(" ")[0]
    kept = pl.concat([pl.read_parquet(release / f"{p}.parquet") for p in ("train", "eval")])
    edited = kept.filter(pl.col("id") == new_id).to_dicts()[0]
    provenance = json.loads(edited["provenance"])
    assert (provenance["source"], provenance["original_id"], provenance["reviewer"]) == ("human-edited",
                                                                                         s.edited[0], "alice")
    assert edited["messages"][-1]["content"] == EDITED
    counts = manifest["counts"]
    assert counts["kept"] + counts["rejected"] == counts["input"] + 1
    review = manifest["review"]
    assert review["agreement"] == {"pairs": 2, "observed": 0.0, "kappa": -1.0}
    assert review["reviewers"] == {"alice": 6, "bob": 2, "carol": 1}
    s.new_id = new_id


def test_lineage_shows_an_edited_pairs_history(story, monkeypatch, capsys):
    s = story
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(s.data))
    new_id = s.new_id
    capsys.readouterr()
    assert main(["lineage", new_id]) == 0
    out = capsys.readouterr().out
    assert "human-edited" in out and s.edited[0] in out and "alice" in out
    assert main(["lineage", s.edited[0]]) == 0
    out = capsys.readouterr().out
    assert "human_review" in out and f"replaced by {new_id}" in out and "release-v2" in out


def test_edits_become_dpo_pairs(story, monkeypatch, tmp_path):
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(story.data))
    out = tmp_path / "preference.jsonl"
    assert main(["review", "first", "--ledger", str(story.ledger), "--preferences", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1
    assert rows[0]["chosen"] == [{"role": "assistant", "content": EDITED}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": story.edited[1]}]
    assert rows[0]["prompt"][-1]["role"] == "user" and rows[0]["suite"] == "human_review"


def test_report_review_section_renders_without_console_errors(story, monkeypatch):
    s = story
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(s.data))
    assert main(["report", "release-v3", "--no-embeddings"]) == 0
    page = s.data / "reports" / "release-v3" / "index.html"
    s.driver.get("data:text/html,<script>console.error('control')</script>")
    assert any("control" in e for e in console_errors(s.driver))  # the console check can fail
    s.driver.get(page.as_uri())
    section = s.driver.find_element("css selector", "#review").find_element("xpath", "following-sibling::p").text
    assert "Cohen's kappa -1.00" in section and "by alice (6), bob (2), carol (1)" in section
    assert s.driver.find_elements("xpath", "//h3[contains(., 'Automatic checks against human verdicts')]")
    assert console_errors(s.driver) == []
    s.driver.execute_script("document.getElementById('review').scrollIntoView()")
    shoot(s, "report-review-section")
    sheet = (page.parent / "DATASHEET.md").read_text()
    assert "## Human review" in sheet and "Cohen's kappa -1.00" in sheet
