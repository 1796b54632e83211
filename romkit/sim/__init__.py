"""The virtual MT6589 phone (Lenovo S820-like) and the synthetic artifacts it and the demo use."""
