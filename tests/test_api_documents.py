"""Ingest and search over real HTTP, with the real MiniLM model and Milvus Lite."""

import httpx
import pytest

from tests.files import make_pdf

ANIMALS = [
    {"id": "cats", "text": "Cats are small domesticated felines that purr and chase mice.", "source": "pets.txt", "metadata": {"lang": "en", "year": 2020}},
    {"id": "ships", "text": "Container ships carry cargo across the ocean between large ports.", "source": "trade.pdf", "metadata": {"lang": "en", "year": 2021}},
    {"id": "bread", "text": "Sourdough bread rises slowly thanks to wild yeast and bacteria.", "source": "food.md", "metadata": {"lang": "fr", "year": 2022}},
]


@pytest.fixture
def client(prism_url):
    with httpx.Client(base_url=prism_url, timeout=120) as client:
        yield client


def ingest(client, collection, documents):
    response = client.post("/v1/documents", json={"collection": collection, "documents": documents})
    assert response.status_code == 200, response.text
    return response.json()


def search(client, collection, text, **extra):
    response = client.post("/v1/search", json={"query": {"text": text}, "collection": collection, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def count_items(client, collection):
    collections = {c["name"]: c["items"] for c in client.get("/v1/collections").json()["collections"]}
    return collections.get(collection, 0)


def test_search_finds_documents_by_meaning(client, collection):
    body = ingest(client, collection, ANIMALS)
    assert body["ids"] == ["cats", "ships", "bread"]
    assert body["chunks"] == 3

    result = search(client, collection, "a kitten hunting a mouse", top_k=3)
    top = result["results"][0]
    assert top["doc_id"] == "cats"
    assert top["modality"] == "text"
    assert top["text"] == ANIMALS[0]["text"]
    assert top["metadata"] == {"lang": "en", "year": 2020}
    assert top["source"] == "pets.txt"
    scores = [r["score"] for r in result["results"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    assert set(result["timings_ms"]) >= {"encode.text", "search.text-space", "fusion", "total"}
    assert result["timings_ms"]["total"] >= result["timings_ms"]["search.text-space"]
    assert result["routes"]["ran"] == ["text->text", "text->caption", "text->audio"]  # no image model here
    assert "text->image" in result["routes"]["skipped"]
    assert top["routes"] == {"text->text": {"rank": 1, "score": top["score"]}}

    assert search(client, collection, "freight vessels at sea", top_k=1)["results"][0]["doc_id"] == "ships"


def test_long_documents_are_chunked_with_positions_and_offsets(client, collection):
    sentences = [f"Paragraph {i} talks about topic number {i} in some detail." for i in range(120)]
    text = " ".join(sentences)
    body = ingest(client, collection, [{"id": "long", "text": text, "title": "Long read"}])
    assert body["chunks"] > 3
    hits = search(client, collection, "topic number 97", top_k=50)["results"]
    assert len(hits) == body["chunks"]
    for hit in hits:
        assert text[hit["char_start"] : hit["char_end"]] == hit["text"]
        assert hit["title"] == "Long read"
    assert sorted(hit["position"] for hit in hits) == list(range(body["chunks"]))


def test_reingesting_a_document_replaces_its_chunks(client, collection):
    long_text = " ".join(f"Sentence {i} about gardening and tomatoes." for i in range(150))
    first = ingest(client, collection, [{"id": "doc", "text": long_text}])
    assert first["chunks"] > 1
    second = ingest(client, collection, [{"id": "doc", "text": "Now it is only about bicycles."}])
    assert second["chunks"] == 1
    assert count_items(client, collection) == 1
    (hit,) = search(client, collection, "tomatoes", top_k=10)["results"]
    assert hit["text"] == "Now it is only about bicycles."


def test_identical_content_is_not_embedded_twice(client, collection):
    text = "A unique sentence about lighthouses on rocky northern coasts."
    first = ingest(client, collection, [{"id": "a", "text": text}, {"id": "b", "text": text}])
    assert first["chunks"] == 2
    assert first["embedded"] == 1 and first["reused"] == 1
    again = ingest(client, collection, [{"id": "a", "text": text}])
    assert again["embedded"] == 0 and again["reused"] == 1
    assert count_items(client, collection) == 2


def test_documents_without_id_get_a_stable_one(client, collection):
    first = ingest(client, collection, [{"text": "Stable ids come from the content."}])
    second = ingest(client, collection, [{"text": "Stable ids come from the content."}])
    assert first["ids"] == second["ids"] and first["ids"][0].startswith("doc-")
    assert count_items(client, collection) == 1


def test_filters_restrict_results(client, collection):
    ingest(client, collection, ANIMALS)

    def ids(filters):
        return {r["doc_id"] for r in search(client, collection, "anything at all", top_k=10, filters=filters)["results"]}

    assert ids({"source": "trade.pdf"}) == {"ships"}
    assert ids({"doc_id": ["cats", "bread"]}) == {"cats", "bread"}
    assert ids({"metadata": {"lang": "fr"}}) == {"bread"}
    assert ids({"metadata": {"year": [2020, 2022]}}) == {"cats", "bread"}
    assert ids({"source": 'pets.txt" or source != "'}) == set()
    assert ids({"doc_id": ["cats"], "metadata": {"lang": "en"}}) == {"cats"}


def test_min_score_drops_weak_matches(client, collection):
    ingest(client, collection, ANIMALS)
    everything = search(client, collection, "purring cat", top_k=3)["results"]
    threshold = (everything[0]["score"] + everything[1]["score"]) / 2
    strong = search(client, collection, "purring cat", top_k=3, min_score=threshold)["results"]
    assert [r["doc_id"] for r in strong] == ["cats"]


def test_upload_txt_md_and_pdf(client, collection):
    files = [
        ("files", ("notes/whales.txt", b"Blue whales are the largest animals that ever lived.", "text/plain")),
        ("files", ("recipes.md", "# Pancakes\n\nWhisk flour, eggs and milk; fry in butter.".encode(), "text/markdown")),
        ("files", ("volcano.pdf", make_pdf("Volcanoes erupt molten lava and ash.", "Magma chambers lie beneath them."), "application/pdf")),
    ]
    response = client.post("/v1/documents/upload", data={"collection": collection}, files=files)
    assert response.status_code == 200, response.text
    assert response.json()["ids"] == ["notes/whales.txt", "recipes.md", "volcano.pdf"]
    top = search(client, collection, "lava from an eruption", top_k=1)["results"][0]
    assert top["doc_id"] == "volcano.pdf" and top["source"] == "volcano.pdf" and top["title"] == "volcano"
    assert search(client, collection, "making breakfast pancakes", top_k=1)["results"][0]["doc_id"] == "recipes.md"


@pytest.mark.parametrize(
    "name,data,status,code",
    [
        ("slides.pptx", b"PK\x03\x04 not supported", 415, "unsupported_file_type"),
        ("broken.pdf", b"%PDF-1.4 truncated", 400, "invalid_file"),
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 400, "invalid_file"),
        ("empty.txt", "  \n\u200b ".encode(), 400, "invalid_input"),
    ],
)
def test_rejected_uploads_store_nothing(client, collection, name, data, status, code):
    good = ("files", ("good.txt", b"A perfectly fine document.", "text/plain"))
    response = client.post("/v1/documents/upload", data={"collection": collection}, files=[good, ("files", (name, data))])
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and name in error["message"]
    assert count_items(client, collection) == 0


def test_bad_json_documents_store_nothing(client, collection):
    bad = [  # what the schema cannot say is a 400; what breaks its limits, a 422
        ({"collection": collection, "documents": [{"id": "ok", "text": "fine"}, {"id": "blank", "text": "  \u200b "}]}, 400),
        ({"collection": collection, "documents": [{"id": "x", "text": "one"}, {"id": "x", "text": "two"}]}, 400),
        ({"collection": collection, "documents": [{"id": "t", "text": "ok", "title": "é" * 600}]}, 400),  # 1200 bytes
        ({"collection": collection, "documents": [{"id": "t", "text": "ok", "title": "x" * 2000}]}, 422),
        ({"collection": "bad name!", "documents": [{"text": "fine"}]}, 422),
    ]
    for body, status in bad:
        response = client.post("/v1/documents", json=body)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == {400: "invalid_input", 422: "invalid_request"}[status]
    assert count_items(client, collection) == 0


def test_items_documents_and_collections_lifecycle(client, collection):
    ingest(client, collection, ANIMALS)
    hit = search(client, collection, "sourdough", top_k=1)["results"][0]

    item = client.get(f"/v1/items/{hit['id']}").json()
    assert item["doc_id"] == "bread" and item["collection"] == collection and item["text"] == hit["text"]

    assert client.delete(f"/v1/items/{hit['id']}").json() == {"deleted": 1}
    assert client.get(f"/v1/items/{hit['id']}").status_code == 404
    assert client.delete(f"/v1/items/{hit['id']}").status_code == 404

    assert client.delete("/v1/documents/ships", params={"collection": collection}).json() == {"deleted": 1}
    assert client.delete("/v1/documents/ships", params={"collection": collection}).status_code == 404
    assert count_items(client, collection) == 1

    listed = {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}
    assert listed[collection]["items"] == 1 and listed[collection]["created_at"] > 0
    assert client.delete(f"/v1/collections/{collection}").json() == {"deleted": 1}
    assert collection not in {c["name"] for c in client.get("/v1/collections").json()["collections"]}
    response = client.post("/v1/search", json={"query": {"text": "cats"}, "collection": collection})
    assert response.status_code == 404 and collection in response.json()["error"]["message"]
    assert client.delete(f"/v1/collections/{collection}").status_code == 404
