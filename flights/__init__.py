"""Drone operators' part: plan sorties (planner), check them, dispatch them over MAVLink
(dispatch, the only user of dronekit), record what they flew and photographed."""
