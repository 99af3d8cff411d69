"""The object tracker on hand-made detection sequences: ids, lives, events, counts."""

from __future__ import annotations

from edge_node.tracker import ObjectEvent, ObjectTracker
from pipeline.detection import Box, Detection

EVERYTHING = ("person", "car")


def _person(box: Box, score: float = 0.9) -> Detection:
    return Detection(0, "person", score, box)


def _walk(x: float) -> Box:
    return (x, 0.2, x + 0.1, 0.6)


def _types(events: list[ObjectEvent]) -> list[str]:
    return [e.type for e in events]


def _feed(tracker: ObjectTracker, frames: list[list[Detection]], **kw: object) -> list[ObjectEvent]:
    events: list[ObjectEvent] = []
    for seq, detections in enumerate(frames):
        events += tracker.update(
            seq / 10,
            seq,
            detections,
            source="cloud",
            seen_labels=EVERYTHING,
            **kw,  # type: ignore[arg-type]
        )
    return events


def test_a_walking_person_is_one_object_from_new_to_end() -> None:
    tracker = ObjectTracker(labels=EVERYTHING, min_hits=2, max_missed_s=0.5, update_s=0.3)
    frames = [[_person(_walk(0.1 + 0.02 * i))] for i in range(20)] + [[]] * 10
    events = _feed(tracker, frames)
    assert _types(events)[0] == "new"
    assert _types(events)[-1] == "end"
    assert set(_types(events)[1:-1]) == {"update"}
    assert len({e.object.id for e in events}) == 1  # one id for the whole life
    obj = events[-1].object
    assert obj.frames == 20
    assert obj.start_ts == 0.0
    assert obj.end_ts == 1.9  # the last frame it was seen on
    assert tracker.counts() == {"car": 0, "person": 0}


def test_two_people_keep_their_own_ids_and_counts_follow_them() -> None:
    tracker = ObjectTracker(labels=EVERYTHING, min_hits=2)
    events = _feed(tracker, [[_person(_walk(0.1)), _person(_walk(0.6))]] * 3)
    assert _types(events) == ["new", "new"]
    assert tracker.counts() == {"car": 0, "person": 2}
    left, right = sorted(tracker.live.values(), key=lambda o: o.box[0])
    assert left.id != right.id
    assert left.box == _walk(0.1)


def test_one_frame_flickers_and_low_scores_never_become_objects() -> None:
    tracker = ObjectTracker(labels=EVERYTHING, min_hits=2, max_missed_s=0.2)
    frames = [[_person(_walk(0.1))], [], [], [], [_person(_walk(0.5), score=0.2)]] + [[]] * 5
    assert _feed(tracker, frames) == []  # seen once: noise; 0.2: below min_score


def test_objects_the_answering_detector_cannot_see_are_not_missing() -> None:
    """A car seen by the cloud lives on through frames the edge (people only) answered."""
    tracker = ObjectTracker(labels=EVERYTHING, min_hits=1, max_missed_s=0.5)
    car = Detection(2, "car", 0.8, (0.8, 0.0, 0.95, 0.15))
    events = tracker.update(0.0, 0, [car], source="cloud", seen_labels=EVERYTHING)
    for seq in range(1, 20):
        events += tracker.update(seq / 10, seq, [], source="edge", seen_labels=("person",))
    assert _types(events) == ["new"]  # no end: the edge cannot see cars
    events = []
    for seq in range(20, 30):  # the cloud answers again, and sees no car
        events += tracker.update(seq / 10, seq, [], source="cloud", seen_labels=EVERYTHING)
    assert _types(events) == ["end"]
    assert events[0].object.end_ts == 0.0  # when it was last seen


def test_replaying_the_same_detections_gives_the_same_ids() -> None:
    frames = [[_person(_walk(0.1 + 0.01 * i))] for i in range(5)]
    first = _feed(ObjectTracker(labels=EVERYTHING), frames)
    second = _feed(ObjectTracker(labels=EVERYTHING), frames)
    assert [e.object.id for e in first] == [e.object.id for e in second]


def test_the_tracker_is_bounded_and_finish_ends_everything() -> None:
    tracker = ObjectTracker(labels=EVERYTHING, min_hits=1, max_objects=3)
    crowd = [_person((0.1 * i, 0.1, 0.1 * i + 0.05, 0.3)) for i in range(8)]
    events = tracker.update(0.0, 0, crowd, source="cloud", seen_labels=EVERYTHING)
    assert len(tracker.live) == 3
    assert _types(events) == ["new"] * 3
    assert _types(tracker.finish(1.0)) == ["end"] * 3
    assert not tracker.live


def test_a_vehicle_called_car_then_truck_stays_one_object() -> None:
    tracker = ObjectTracker(labels=("car", "truck"), min_hits=2, min_score=0.3)
    van = (0.8, 0.0, 0.95, 0.15)
    names = ["truck", "car", "truck", "truck", "car", "car"]
    events: list[ObjectEvent] = []
    for seq, name in enumerate(names):
        events += tracker.update(
            seq / 10,
            seq,
            [Detection(2, name, 0.5, van)],
            source="cloud",
            seen_labels=("car", "truck"),
        )
    assert _types(events) == ["new"]
    (obj,) = tracker.live.values()
    assert obj.label == "truck"  # the first label stays
    assert obj.frames == len(names)


def test_a_walker_missed_for_a_second_keeps_their_id_though_no_box_overlaps() -> None:
    # 0.04 of the frame per frame: a second's walk (0.4) is four widths, so no box of
    # the walker overlaps the last one seen. Only the velocity and distance pass match it.
    tracker = ObjectTracker(labels=EVERYTHING, min_hits=2)
    seen = [[_person(_walk(0.05 + 0.04 * i))] for i in range(5)]
    missed: list[list[Detection]] = [[]] * 10
    again = [[_person(_walk(0.05 + 0.04 * i))] for i in range(15, 18)]
    events = _feed(tracker, seen + missed + again)
    assert _types(events)[0] == "new"
    assert "end" not in _types(events)
    assert len(tracker.live) == 1
    assert next(iter(tracker.live.values())).frames == 8


def test_a_detection_beyond_the_gate_is_a_new_object_not_a_jump() -> None:
    tracker = ObjectTracker(labels=EVERYTHING, min_hits=1)
    _feed(tracker, [[_person(_walk(0.1))]] * 3)
    (first,) = tracker.live.values()
    # The next frame, a person two heights to the right: nobody walks that in 0.1 s.
    events = tracker.update(0.3, 3, [_person(_walk(0.9))], source="cloud", seen_labels=EVERYTHING)
    assert _types(events) == ["new"]
    assert events[0].object.id != first.id
    assert first.box == _walk(0.1)  # the standing person's track did not jump


def test_a_parked_car_outlasts_a_gap_that_ends_a_walker() -> None:
    car_box: Box = (0.7, 0.05, 0.8, 0.12)
    car = Detection(2, "car", 0.5, car_box)
    tracker = ObjectTracker(labels=EVERYTHING, min_hits=2, max_missed_s=1.0)
    walker = [_person(_walk(0.05 + 0.02 * i)) for i in range(25)]
    # 2.5 s seen (both), then 5 s in which the detector finds neither.
    frames = [[car, walker[i]] for i in range(25)] + [[]] * 50
    events = _feed(tracker, frames)
    ended = {e.object.label for e in events if e.type == "end"}
    assert ended == {"person"}  # the walker left; the car, still for 2.5 s, stays
    assert tracker.counts() == {"car": 1, "person": 0}
    assert tracker.update(7.5, 75, [car], source="cloud", seen_labels=EVERYTHING) == []
    (parked,) = tracker.live.values()
    assert parked.frames == 26  # the same object, seen again
