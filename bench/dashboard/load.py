"""The dashboard's load figures in a real headless Chromium: the wire size of its files,
the time to first render (cold: a fresh browser profile, nothing cached) of the sign-in
page and of a job's page, and the API calls a job page makes per second.

Usage: load.py URL KEY JOB RUNS
"""

import json
import os
import statistics
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

url, key, job, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--disable-background-networking", "--no-first-run"]:
        options.add_argument(arg)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


sign_in, job_page, transfer = [], [], {}
for _ in range(runs):
    d = browser()
    try:
        d.get(url + "/")
        WebDriverWait(d, 30).until(ec.presence_of_element_located((By.ID, "credential")))
        sign_in.append(d.execute_script("return window.fungiFirstRenderMs"))
        transfer = d.execute_script(
            "return Object.fromEntries(performance.getEntriesByType('resource')"
            ".concat(performance.getEntriesByType('navigation'))"
            ".map(e => [new URL(e.name).pathname, e.transferSize]))")
        d.execute_script("sessionStorage.setItem('fungi.credential', arguments[0])", key)
        d.get(f"{url}/jobs/{job}")
        # Polled every 5 ms (WebDriver's default, 500 ms, would be the resolution).
        WebDriverWait(d, 30, poll_frequency=0.005).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "svg.graph")))
        job_page.append(d.execute_script("return performance.now()"))
    finally:
        d.quit()

d = browser()
try:
    d.get(url + "/")
    d.execute_script("sessionStorage.setItem('fungi.credential', arguments[0])", key)
    d.get(f"{url}/jobs/{job}")
    WebDriverWait(d, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg.graph")))
    d.execute_script("performance.clearResourceTimings(); performance.setResourceTimingBufferSize(10000);")
    time.sleep(30)
    calls = d.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/')).length")
finally:
    d.quit()

print(json.dumps({
    "wire_bytes": transfer,
    "sign_in_first_render_ms": {"median": statistics.median(sign_in), "max": max(sign_in)},
    "job_page_graph_drawn_ms": {"median": statistics.median(job_page), "max": max(job_page)},
    "job_page_api_calls_per_s": calls / 30.0,
    "runs": runs,
}, indent=2))
