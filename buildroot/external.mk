include $(sort $(wildcard $(BR2_EXTERNAL_WAYRAY_PATH)/package/*/*.mk))
