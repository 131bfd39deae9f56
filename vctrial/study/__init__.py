"""Published figures against simulated ones: validation suites (``vctrial check``) and calibration
(``vctrial calibrate``)."""
