"""Users and roles: the lowest layer, which every Beacon app may import and which imports none of them."""
