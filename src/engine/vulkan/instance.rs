//! The Vulkan instance: the loader opened at run time (pigpu runs without libvulkan installed), the
//! optional Khronos validation layer, and a debug messenger that records validation errors so
//! tests can fail on them.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::{Arc, Mutex};

use ash::vk;

use super::error::{vkerr, Result, VkError};
use crate::platform::vulkan::VulkanEnv;

const VALIDATION_LAYER: &CStr = c"VK_LAYER_KHRONOS_validation";

/// Messages the debug callback collected. Boxed inside `Instance` so its address stays fixed for
/// the callback's user-data pointer.
struct Messages {
    errors: Mutex<Vec<String>>,
    echo: bool,
}

pub struct Instance {
    /// Keeps the loader library loaded for as long as the instance lives.
    _entry: ash::Entry,
    pub(crate) raw: ash::Instance,
    debug: Option<(ash::ext::debug_utils::Instance, vk::DebugUtilsMessengerEXT)>,
    messages: Box<Messages>,
}

unsafe extern "system" fn on_message(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    user: *mut c_void,
) -> vk::Bool32 {
    // SAFETY: `user` is the `Messages` box owned by the Instance, which destroys the messenger
    // before dropping the box; `data` is valid for the duration of the callback per the spec.
    let (msgs, text) = unsafe {
        let msgs = &*(user as *const Messages);
        let text = (*data)
            .message_as_c_str()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        (msgs, text)
    };
    if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR) {
        if msgs.echo {
            log::error!("vulkan validation error: {text}");
        }
        if let Ok(mut e) = msgs.errors.lock() {
            e.push(text);
        }
    } else if msgs.echo {
        log::warn!("vulkan: {text}");
    }
    vk::FALSE
}

impl Instance {
    /// Opens the loader and creates an instance. `validation` enables the Khronos validation
    /// layer (an error if it is not installed); `echo` logs every message it and the driver
    /// send, warnings included (`Tuning::validation`, `Tuning::debug_echo`). `env` is what the
    /// loader read (`Tuning::vulkan_env`), to name the cause when it finds no driver.
    pub fn new(validation: bool, echo: bool, env: &VulkanEnv) -> Result<Arc<Instance>> {
        // SAFETY: loading libvulkan runs its initialisers; it is the system's Vulkan loader.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| VkError::NoLoader(e.to_string()))?;
        // SAFETY: plain queries on a loaded entry.
        let version = unsafe { entry.try_enumerate_instance_version() }
            .map_err(vkerr("vkEnumerateInstanceVersion"))?
            .unwrap_or(vk::API_VERSION_1_0);
        if version < vk::API_VERSION_1_1 {
            return Err(VkError::Unsupported(format!(
                "the Vulkan loader's version {}.{} (1.1 or later needed)",
                vk::api_version_major(version),
                vk::api_version_minor(version)
            )));
        }
        // SAFETY: as above.
        let layers = unsafe { entry.enumerate_instance_layer_properties() }
            .map_err(vkerr("vkEnumerateInstanceLayerProperties"))?;
        let has_layer = layers
            .iter()
            .any(|l| l.layer_name_as_c_str().ok() == Some(VALIDATION_LAYER));
        if validation && !has_layer {
            return Err(VkError::Unsupported(
                "the Khronos validation layer (install vulkan-validationlayers)".into(),
            ));
        }
        // SAFETY: as above.
        let exts = unsafe { entry.enumerate_instance_extension_properties(None) }
            .map_err(vkerr("vkEnumerateInstanceExtensionProperties"))?;
        let has_debug = exts
            .iter()
            .any(|e| e.extension_name_as_c_str().ok() == Some(ash::ext::debug_utils::NAME));

        let app_name = CString::new("pigpu").unwrap();
        let app = vk::ApplicationInfo::default()
            .application_name(&app_name)
            .application_version(1)
            .engine_name(&app_name)
            .api_version(vk::API_VERSION_1_2.min(version));
        let layer_ptrs: Vec<*const c_char> = if validation {
            vec![VALIDATION_LAYER.as_ptr()]
        } else {
            vec![]
        };
        let ext_ptrs: Vec<*const c_char> = if has_debug {
            vec![ash::ext::debug_utils::NAME.as_ptr()]
        } else {
            vec![]
        };
        let info = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_layer_names(&layer_ptrs)
            .enabled_extension_names(&ext_ptrs);
        // SAFETY: `info` and everything it points to live until the call returns.
        let raw = unsafe { entry.create_instance(&info, None) }.map_err(|e| match e {
            vk::Result::ERROR_INCOMPATIBLE_DRIVER => {
                VkError::NoDevice(crate::platform::vulkan_no_device_cause(env).unwrap_or_else(
                    || "no Vulkan driver is installed (the loader found none)".into(),
                ))
            }
            e => VkError::from_vk("vkCreateInstance", e),
        })?;

        let messages = Box::new(Messages {
            errors: Mutex::new(Vec::new()),
            echo,
        });
        let debug = if has_debug {
            let du = ash::ext::debug_utils::Instance::new(&entry, &raw);
            let mut severity = vk::DebugUtilsMessageSeverityFlagsEXT::ERROR;
            if messages.echo {
                severity |= vk::DebugUtilsMessageSeverityFlagsEXT::WARNING;
            }
            let info = vk::DebugUtilsMessengerCreateInfoEXT::default()
                .message_severity(severity)
                .message_type(
                    vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                        | vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                        | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
                )
                .pfn_user_callback(Some(on_message))
                .user_data(&*messages as *const Messages as *mut c_void);
            // SAFETY: the messenger is destroyed in Drop before `messages` is freed.
            match unsafe { du.create_debug_utils_messenger(&info, None) } {
                Ok(m) => Some((du, m)),
                Err(_) => None,
            }
        } else {
            None
        };
        Ok(Arc::new(Instance {
            _entry: entry,
            raw,
            debug,
            messages,
        }))
    }

    /// Validation errors reported since the instance was created (and clears them).
    pub fn take_validation_errors(&self) -> Vec<String> {
        self.messages
            .errors
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: every device (which holds an Arc of this instance) is gone; the messenger and
        // instance are destroyed once, in that order.
        unsafe {
            if let Some((du, m)) = self.debug.take() {
                du.destroy_debug_utils_messenger(m, None);
            }
            self.raw.destroy_instance(None);
        }
    }
}
