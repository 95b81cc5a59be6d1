from tests.helpers import make_challenge


def test_healthz_reports_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["database"]["ok"] is True
    assert response.json["status"] == "ok"


def test_student_sees_published_challenge(student_client):
    challenge = make_challenge(title="Build a solar boat")
    draft = make_challenge(title="Secret draft", status="draft")
    page = student_client.get("/challenges").get_data(as_text=True)
    assert "Build a solar boat" in page
    assert "Secret draft" not in page
    assert student_client.get(f"/challenges/{draft.id}").status_code == 404
    assert student_client.get(f"/challenges/{challenge.id}").status_code == 200
