"""Cold start: the content model places new challenges near the ones a student joined, and serving
pins such cards at fixed positions of the slate."""

from datetime import timedelta

import numpy as np
import pytest

from app.challenges.service import join
from app.extensions import db
from app.models import utcnow
from app.recs import content, events, serving
from app.recs.content import ChallengeText, ContentModel
from app.recs.serving import _blend, _Candidate, get_recommendations
from tests.helpers import make_category, make_challenge, make_participation, make_user

ROBOTICS = [
    ("Line-following robot", "Build a robot that follows a line with infrared sensors and PID."),
    ("Robot arm kinematics", "Program a robot arm: inverse kinematics, servos and sensors."),
    ("Drone swarm", "Coordinate a swarm of drones with onboard sensors and a robot controller."),
    ("Rover navigation", "Teach a rover robot to map a room with lidar sensors."),
    ("Robot soccer", "Two robot teams, ball-tracking cameras and motor control."),
    ("Sensor fusion", "Fuse accelerometer and gyroscope sensors to steady a balancing robot."),
]
POETRY = [
    ("Sonnet week", "Write a sonnet a day; meter, rhyme and a public reading on Friday."),
    ("Haiku garden", "Seventeen syllables about the campus garden, read aloud."),
    ("Spoken word night", "Perform a spoken word poem about your hometown."),
    ("Translation slam", "Translate a poem from another language and read both versions."),
    ("Villanelle workshop", "Repeating lines, strict rhyme: write a villanelle with a partner."),
    ("Poetry zine", "Edit and print a zine of student poems and illustrations."),
]
NEW_ROBOT = ("Robot sensors sprint", "Wire sensors to a small robot and make it avoid obstacles.")


@pytest.fixture
def campus(app):
    """Two unrelated topics whose challenges are all established (not cold), and one student
    who joined two of each topic's challenges."""
    owner = make_user("professor")
    topics = {}
    for name, texts in (("Robotics", ROBOTICS), ("Poetry", POETRY)):
        category = make_category(name)
        topics[name] = [
            make_challenge(
                owner=owner,
                category=category,
                title=title,
                description=description,
                participations_count=20,
                created_at=utcnow() - timedelta(days=60),
            )
            for title, description in texts
        ]
    engineer, poet = make_user(), make_user()
    for challenge in topics["Robotics"][:2]:
        make_participation(engineer, challenge)
    for challenge in topics["Poetry"][:2]:
        make_participation(poet, challenge)
    return {"owner": owner, "engineer": engineer, "poet": poet, **topics}


def publish_new_robot_challenge(campus, **kw):
    return make_challenge(
        owner=campus["owner"],
        category=campus["Robotics"][0].category,
        title=NEW_ROBOT[0],
        description=NEW_ROBOT[1],
        **kw,
    )


def sources(slate):
    return {item.challenge_id: item.source for item in slate.items}


def test_similar_texts_are_closer_than_unrelated_ones():
    texts = [
        ChallengeText(i + 1, title, description, category_id=i // 6, reward_points=10)
        for i, (title, description) in enumerate(ROBOTICS + POETRY)
    ]
    model = ContentModel().fit(texts)
    similarity = model.similarity(np.arange(12), np.arange(12))
    np.fill_diagonal(similarity, np.nan)
    same = np.nanmean(similarity[:6, :6]), np.nanmean(similarity[6:, 6:])
    across = similarity[:6, 6:].mean()
    assert min(same) > 2 * across
    assert np.allclose(np.diag(model.similarity(np.arange(3), np.arange(3))), 1.0, atol=1e-5)


def test_an_empty_or_wordless_catalogue_still_fits():
    assert ContentModel().fit([]).features_.shape[0] == 0
    model = ContentModel().fit([ChallengeText(1, "the", "and", 1, 0)])
    assert model.similarity(np.array([0]), np.array([0])).shape == (1, 1)


def test_a_new_challenge_reaches_a_matching_student_and_not_an_unrelated_one(campus):
    engineer, poet = campus["engineer"], campus["poet"]
    assert "content" not in sources(get_recommendations(engineer, k=6)).values()

    new = publish_new_robot_challenge(campus)
    slate = get_recommendations(engineer, k=6)
    card = next(item for item in slate.items if item.challenge_id == new.id)
    assert card.source == "content" and card.position == serving.content_positions()[0]
    assert card.reason == "New in Robotics"
    assert card.score >= 0.3

    unrelated = get_recommendations(poet, k=6)
    assert new.id not in sources(unrelated)
    assert "content" not in sources(unrelated).values()


def test_cards_are_pinned_at_positions_of_the_slate_not_of_every_page(campus):
    """Show more continues the slate: its pages pin no cold challenges of their own, so a slate
    read in pages of 3 is the slate read in one page of 12."""
    for n in range(4):
        make_challenge(
            owner=campus["owner"],
            category=campus["Robotics"][0].category,
            title=f"Robot sensors sprint {n}",
            description=NEW_ROBOT[1],
        )
    engineer = campus["engineer"]
    whole = get_recommendations(engineer, k=12)
    pinned = [item.position for item in whole.items if item.source == "content"]
    assert pinned == serving.content_positions()
    paged, slate_id, offset = [], None, 0
    while offset < 12:
        page = get_recommendations(engineer, k=3, offset=offset, slate_id=slate_id)
        if slate_id is None:
            events.save_api_page(engineer.id, page, new_slate=True, created_at=utcnow())
        else:
            events.save_cards(page)
            db.session.commit()
        slate_id, offset = page.slate_id, page.next_offset
        paged += page.items
    assert [(i.challenge_id, i.source) for i in paged] == [
        (i.challenge_id, i.source) for i in whole.items
    ]


def test_an_older_cold_challenge_names_the_joined_one_it_resembles(campus):
    new = publish_new_robot_challenge(campus, created_at=utcnow() - timedelta(days=30))
    card = next(
        i for i in get_recommendations(campus["engineer"], k=6).items if i.challenge_id == new.id
    )
    assert card.reason.startswith("Similar to ")
    assert card.reason[len("Similar to ") :] in {c.title for c in campus["Robotics"][:2]}


def test_a_challenge_with_enough_participations_is_no_longer_cold(campus, app):
    app.config["RECS_COLD_PARTICIPATIONS"] = 2
    new = publish_new_robot_challenge(campus)
    assert sources(get_recommendations(campus["engineer"], k=6)).get(new.id) == "content"
    for _ in range(2):
        join(make_user().id, new)
    assert sources(get_recommendations(campus["engineer"], k=6)).get(new.id) != "content"


def test_joins_update_the_cached_model_and_new_challenges_refit_it(campus, monkeypatch):
    fits = []
    original = ContentModel.fit
    monkeypatch.setattr(
        ContentModel, "fit", lambda self, rows: fits.append(1) or original(self, rows)
    )
    first = content.catalogue()
    assert content.catalogue() is first and len(fits) == 1
    joined = campus["Poetry"][3]
    join(make_user().id, joined)
    refreshed = content.catalogue()
    assert len(fits) == 1 and refreshed.fingerprint != first.fingerprint
    assert refreshed.participations[refreshed.model.index([joined.id])[0]] == 21

    edited = campus["Poetry"][4]
    edited.description = "Now about robots and their sensors."
    db.session.commit()
    content.catalogue()
    publish_new_robot_challenge(campus)
    content.catalogue()
    assert len(fits) == 3


def test_a_student_without_joins_and_the_heuristic_arm_get_no_content_cards(campus, monkeypatch):
    publish_new_robot_challenge(campus)
    assert "content" not in sources(get_recommendations(make_user(), k=6)).values()
    monkeypatch.setattr(serving, "serving_arm", lambda user_id: "heuristic")
    slate = get_recommendations(campus["engineer"], k=6)
    assert set(sources(slate).values()) == {"heuristic"}


def test_below_the_similarity_threshold_nothing_is_pinned(campus, app):
    app.config["RECS_CONTENT_MIN_SIMILARITY"] = 0.99
    new = publish_new_robot_challenge(campus)
    assert sources(get_recommendations(campus["engineer"], k=6)).get(new.id) != "content"


def candidate(name: str, slot=None):
    return _Candidate(challenge=name, score=0.0, reason="", source="x", slot=slot)


def test_pinned_cards_take_their_positions_and_close_up_when_the_rest_runs_out():
    fill = [candidate(n) for n in "abcd"]
    pinned = {2: candidate("P"), 5: candidate("Q")}
    assert [c.challenge for c in _blend(fill, pinned)] == list("abPcdQ")
    assert [c.challenge for c in _blend(fill[:1], pinned)] == list("aPQ")
    assert [c.challenge for c in _blend([], pinned)] == list("PQ")
