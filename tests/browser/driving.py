"""Steps every browser test takes: log in by keyboard, take full-page screenshots."""

from __future__ import annotations

import time
from pathlib import Path

from tests.helpers import wait_for


def login(driver, stack) -> None:
    """Log in through the form, by keyboard: type the token, press Enter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.delete_all_cookies()  # a fresh login every time, never a session left by another test
    driver.get(stack["url"] + "/dashboard/login")
    field = driver.find_element(By.NAME, "token")
    field.clear()
    field.send_keys(stack["settings"].query_api_token + Keys.ENTER)
    wait_for(lambda: "/dashboard/login" not in driver.current_url, timeout=15)


def screenshot(driver, folder: Path, name: str, width: int = 1280) -> Path:
    """Save a full-page screenshot at ``width`` CSS pixels."""
    driver.set_window_size(width, 900)
    time.sleep(0.1)
    height = driver.execute_script("return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    driver.set_window_size(width, min(int(height) + 20, 6000))
    time.sleep(0.1)
    driver.execute_script("window.scrollTo(0, 0)")
    path = folder / f"{name}-{width}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    return path
