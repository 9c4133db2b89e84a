import math

from servetune.tune.pareto import crowding, dominance_matrix, fronts, hypervolume, non_dominated


def test_non_dominated_keeps_only_points_nothing_beats():
    points = [(1, 5), (2, 2), (5, 1), (3, 3), (2, 2), (6, 6)]
    # (3, 3) is beaten by (2, 2); (6, 6) by everything; equal points do not dominate each other.
    assert non_dominated(points) == [0, 1, 2, 4]
    matrix = dominance_matrix(points)
    assert matrix[1, 3] and not matrix[3, 1] and not matrix[1, 4]


def test_fronts_peel_layer_by_layer():
    points = [(1, 5), (2, 2), (5, 1), (3, 3), (6, 6), (4, 4)]
    assert fronts(points) == [[0, 1, 2], [3], [5], [4]]


def test_crowding_gives_extremes_infinity_and_middle_the_normalised_gap():
    points = [(0, 4), (1, 2), (4, 0)]
    distances = crowding(points)
    assert distances[0] == distances[2] == math.inf
    assert distances[1] == (4 - 0) / 4 + (4 - 0) / 4


def test_hypervolume_matches_hand_computed_areas_and_volumes():
    # Two points in 2-D against (4, 4): the union of two rectangles 3x1 (from (1,3)) and 1x3 (from (3,1))
    # plus their overlap counted once: 3 + 3 - 1 = 5.
    assert hypervolume([(1, 3), (3, 1)], (4, 4)) == 5
    assert hypervolume([(1, 3), (3, 1), (3, 3)], (4, 4)) == 5  # a dominated point adds nothing
    assert hypervolume([(5, 0)], (4, 4)) == 0  # beyond the reference
    # 3-D against (2, 2, 3): (0, 0, 1) holds a 2x2x2 box, (1, 1, 0) a 1x1x3 one; they share 1x1x2: 8 + 3 - 2.
    assert math.isclose(hypervolume([(0, 0, 1), (1, 1, 0)], (2, 2, 3)), 9)


def test_crowding_over_an_axis_of_infinities_warns_of_nothing():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's RuntimeWarning on inf - inf would be an error here
        distance = crowding([(math.inf, 1.0), (math.inf, 2.0), (math.inf, 4.0)])
    assert distance == [math.inf, 1.0, math.inf]
