"""``camoffload dashboard``: a live web page of the fleet, fed by the broker."""
