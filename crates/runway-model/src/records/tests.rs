use super::*;

fn target(revision: &str, percent: u8) -> TrafficTarget {
    TrafficTarget {
        revision: revision.into(),
        percent,
        tag: None,
    }
}

#[test]
fn the_primary_revision_has_the_most_traffic_and_ties_go_to_the_first() {
    let mut state = ServiceState::default();
    assert_eq!(state.primary_revision(), None);
    state.traffic = vec![target("new", 0), target("a", 30), target("b", 70)];
    assert_eq!(state.primary_revision(), Some("b"));
    state.traffic = vec![target("new", 50), target("old", 50)];
    assert_eq!(state.primary_revision(), Some("new"));
}
