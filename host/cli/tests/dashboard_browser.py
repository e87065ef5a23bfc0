"""Drives the dashboard of a running `fungi server` in a real headless Chromium
(Debian's chromium and chromedriver, through Selenium's WebDriver client) as a person
would: signs in, submits a job, watches it, takes a savepoint, cancels it, uploads a
plugin; a viewer and a wrong key too. Prints one JSON object of what it saw (the Rust
test asserts on it) and saves screenshots of the main pages.

Usage: dashboard_browser.py URL DEV_KEY VIEWER_KEY ADMIN_KEY SQL PLUGIN_WASM SCREENSHOT_DIR
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

url, dev_key, viewer_key, admin_key, sql, plugin_wasm, shots = sys.argv[1:8]
os.makedirs(shots, exist_ok=True)
seen = {}

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1400,1000", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"]:
    options.add_argument(arg)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
driver = webdriver.Chrome(options=options, service=service)
driver.set_page_load_timeout(30)
wait = WebDriverWait(driver, 30)
console = []


def drain_console():
    for entry in driver.get_log("browser"):
        console.append(entry)


def shot(name):
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))


def css(selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def wait_css(selector):
    return wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, selector)))


def wait_text(selector, text):
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, selector), text))


def button(label):
    return wait.until(ec.element_to_be_clickable(
        (By.XPATH, f"//button[normalize-space(.)='{label}']")))


def sign_in(key):
    driver.get(url + "/")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#credential, header"))
    for sign_out in css("header button"):
        sign_out.click()
    field = wait_css("#credential")
    field.clear()
    field.send_keys(key)
    button("Sign in").click()


try:
    # A wrong key: the sign-in page says why, and nothing is kept.
    sign_in("fgk_0123_4567")
    wait_css(".signin .error")
    seen["wrong_key_error"] = css(".signin .error")[0].text
    seen["wrong_key_kept"] = driver.execute_script(
        "return sessionStorage.getItem('fungi.credential')")
    timing = driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return {first_render_ms: window.fungiFirstRenderMs,"
        " dom_content_loaded_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd};")
    seen["timing"] = timing
    shot("sign-in")
    drain_console()
    refused_console = len(console)

    # A developer: submit with EXPLAIN first, then run.
    sign_in(dev_key)
    wait_css("#sql")
    seen["dev_who"] = css(".who")[0].text
    seen["dev_nav"] = [a.text for a in css("header nav a")]
    driver.find_element(By.CSS_SELECTOR, "#sql").send_keys(sql)
    run = driver.find_element(By.XPATH, "//button[normalize-space(.)='Run']")
    seen["run_enabled_before_explain"] = run.is_enabled()
    # Over the tenant's quota: the page says why, and Run stays off.
    parallelism = driver.find_element(By.CSS_SELECTOR, "#parallelism")
    parallelism.clear()
    parallelism.send_keys("8")
    button("Explain").click()
    wait_css("section[aria-label='submit a job'] .error")
    seen["over_quota"] = css("section[aria-label='submit a job'] .error")[0].text
    seen["run_enabled_over_quota"] = run.is_enabled()
    parallelism.clear()
    parallelism.send_keys("1")
    button("Explain").click()
    wait_css(".explained svg.graph")
    seen["explained_vertices"] = len(css(".explained svg.graph g.vertex"))
    shot("submit-explained")
    button("Run").click()
    wait.until(lambda d: "/jobs/" in d.current_url)
    seen["job"] = driver.current_url.rsplit("/jobs/", 1)[1]
    wait_text("#job-status", "RUNNING")
    first = int(wait_css("#rows-read").text)
    time.sleep(3)
    second = int(css("#rows-read")[0].text)
    seen["rows_read"] = [first, second]
    # The graph with live rates, the charts, the checkpoint history.
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "svg.graph g.vertex")) >= 2)
    seen["graph_vertices"] = [v.get_attribute("aria-label")
                              for v in css("svg.graph g.vertex")]
    seen["graph_edges"] = [e.text for e in css("svg.graph g.edge text")]
    wait.until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, "table[aria-label='checkpoint history'] tbody tr")) >= 1)
    seen["checkpoint_rows"] = len(css("table[aria-label='checkpoint history'] tbody tr"))
    seen["charts"] = [c.text.split("\n")[0] for c in css("figure.chart figcaption")]
    # Dead letters, filtered by reason, the original record shown as data.
    wait.until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, "table[aria-label='dead-letter records'] tbody tr")) >= 1)
    reasons = [o.get_attribute("value") for o in css("#reason option")]
    seen["dead_letter_reasons"] = reasons
    Select(driver.find_element(By.CSS_SELECTOR, "#reason")).select_by_value(reasons[-1])
    rows = css("table[aria-label='dead-letter records'] tbody tr")
    seen["dead_letter_row"] = rows[0].text if rows else ""
    # Calls the job page makes: counted over ten seconds from the resource timings.
    driver.execute_script("performance.clearResourceTimings();"
                          "performance.setResourceTimingBufferSize(10000);")
    time.sleep(10)
    calls = driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/api/v1/')).map(e => new URL(e.name).pathname);")
    seen["job_page_calls_per_s"] = len(calls) / 10.0
    seen["job_page_paths"] = sorted(set(calls))
    driver.execute_script("window.scrollTo(0, 0)")
    shot("job")
    driver.execute_script(
        "document.querySelector(\"section[aria-label='checkpoints']\").scrollIntoView()")
    shot("job-checkpoints")
    # A savepoint, then cancel.
    button("Savepoint").click()
    wait_text(".notice", "taken")
    seen["savepoint_notice"] = css(".notice")[0].text
    wait.until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, "section[aria-label='savepoints'] li code")) >= 1)
    seen["savepoints"] = [c.text for c in css("section[aria-label='savepoints'] li code")]
    # Stop with a savepoint, start a new job from it, cancel that one.
    button("Stop with savepoint").click()
    wait_text("#job-status", "STOPPED")
    seen["actions_after_stop"] = [b.text for b in css(".actions button")]
    wait.until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, "section[aria-label='savepoints'] li")) >= 2)
    last = css("section[aria-label='savepoints'] li")[-1]
    seen["stopped_with"] = last.find_element(By.TAG_NAME, "code").text
    last.find_element(By.TAG_NAME, "button").click()
    wait.until(lambda d: d.current_url.rsplit("/jobs/", 1)[1] != seen["job"])
    seen["restarted_job"] = driver.current_url.rsplit("/jobs/", 1)[1]
    wait_text("#job-status", "RUNNING")
    button("Cancel").click()
    wait_text("#job-status", "CANCELLED")
    seen["cancelled"] = True
    seen["actions_after_cancel"] = [b.text for b in css(".actions button")]

    # A plugin upload shows the signature status under the tenant's trust policy.
    driver.get(url + "/plugins")
    wait_css("#plugin-file").send_keys(plugin_wasm)
    driver.find_element(By.CSS_SELECTOR, "#plugin-name").send_keys("uploaded")
    button("Upload").click()
    wait_text("form[aria-label='upload a plugin'] .notice", "signature")
    seen["upload_notice"] = css("form[aria-label='upload a plugin'] .notice")[0].text
    wait.until(lambda d: "uploaded" in d.find_element(
        By.CSS_SELECTOR, "table[aria-label='plugins']").text)
    seen["plugins_table"] = css("table[aria-label='plugins']")[0].text
    time.sleep(2.5)
    seen["usage_charts"] = len(css("section[aria-label='plugin usage'] figure.chart"))
    shot("plugins")

    # The jobs list in a narrow window: nothing wider than the window.
    driver.get(url + "/jobs")
    wait.until(lambda d: seen["job"] in d.find_element(By.CSS_SELECTOR, "table").text)
    shot("jobs")
    driver.set_window_size(420, 900)
    time.sleep(0.5)
    seen["narrow_overflow_px"] = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")
    shot("jobs-narrow")
    driver.set_window_size(1400, 1000)

    # An admin: tenants with quotas, a key created (its secret shown once) and revoked,
    # the audit log filtered.
    sign_in(admin_key)
    wait_css("table[aria-label='jobs']")
    seen["admin_nav"] = [a.text for a in css("header nav a")]
    driver.get(url + "/tenants")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "section.card")) >= 2)
    seen["tenants"] = [h.text for h in css("section.card h2")]
    shot("tenants")
    driver.get(url + "/keys")
    wait.until(lambda d: len(d.find_elements(
        By.CSS_SELECTOR, "table[aria-label='keys'] tbody tr")) >= 3)
    wait_css("#key-name").send_keys("from-the-browser")
    Select(driver.find_element(By.CSS_SELECTOR, "#key-role")).select_by_value("viewer")
    driver.find_element(By.CSS_SELECTOR, "#key-tenant").send_keys("a")
    button("Create key").click()
    seen["new_key"] = wait_css("#new-key").text
    new_id = seen["new_key"].split("_")[1]
    revoke = wait.until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, f"button[aria-label='revoke key {new_id}']")))
    shot("keys")
    revoke.click()
    wait.until(lambda d: not d.find_elements(
        By.CSS_SELECTOR, f"button[aria-label='revoke key {new_id}']"))
    seen["revoked_row"] = [r.text for r in css("table[aria-label='keys'] tbody tr")
                           if new_id in r.text][0]
    driver.get(url + "/audit")
    wait_css("#audit-filter").send_keys("key.")
    wait.until(lambda d: "key.revoke" in d.find_element(
        By.CSS_SELECTOR, "table[aria-label='audit log']").text)
    seen["audit_actions"] = sorted({r.find_elements(By.TAG_NAME, "td")[4].text
                                    for r in css("table[aria-label='audit log'] tbody tr")})
    shot("audit")
    drain_console()
    seen["console_errors"] = [e["message"] for e in console[refused_console:]
                              if e["level"] == "SEVERE"]
    seen["remote_requests"] = driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".map(e => e.name).filter(n => !n.startsWith(location.origin));")

    # A viewer: no submit form, no action buttons; a direct call is refused.
    sign_in(viewer_key)
    wait_css("table[aria-label='jobs']")
    time.sleep(1)
    seen["viewer_nav"] = [a.text for a in css("header nav a")]
    seen["viewer_sql_editor"] = len(css("#sql"))
    driver.get(url + "/jobs/" + seen["job"])
    wait_css("#job-status")
    seen["viewer_buttons"] = [b.text for b in css(".actions button")]
    seen["viewer_direct_submit"] = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/v1/jobs', {method: 'POST', headers: {'Content-Type': 'application/json',"
        " 'Authorization': 'Bearer ' + sessionStorage.getItem('fungi.credential')},"
        " body: JSON.stringify({sql: arguments[0]})})"
        ".then(r => r.json().then(b => done({status: r.status, error: b.error})));",
        sql)
    seen["ok"] = True
except TimeoutException as e:
    seen["failed"] = f"timed out: {e.msg or ''} at {driver.current_url}"
    seen["page"] = driver.find_element(By.TAG_NAME, "body").text[:4000]
    shot("failure")
finally:
    driver.quit()

print(json.dumps(seen))
